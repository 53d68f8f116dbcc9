"""Visual Taxonomy: ``python app.py`` starts the labeling app; ``python app.py --help`` lists the tools."""

if __name__ == "__main__":
    import sys

    from webapp.cli import main

    sys.exit(main())
