"""``python -m trainer``: see ``trainer.cli``."""

import sys

from taxonomy import FormatError, ImageError

from .cli import main

if __name__ == "__main__":
    try:
        code = main()
    except (FormatError, ImageError) as exc:  # a malformed train.csv or photo: one line, not a traceback
        print(f"error: {exc}", file=sys.stderr)
        code = 2
    raise SystemExit(code)
