"""``python -m trainer``: see ``trainer.cli``."""

from .cli import main

if __name__ == "__main__":
    raise SystemExit(main())
