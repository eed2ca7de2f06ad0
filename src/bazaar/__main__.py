"""``python -m bazaar``: the same command line as the ``bazaar`` console script."""

from bazaar.cli import main

if __name__ == "__main__":
    main()
