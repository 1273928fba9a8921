"""`python -m nlptransfer.predict ...`: the predict command (its code is `nlptransfer.cli.predict`)."""

import sys

from .cli.predict import main  # noqa: F401

if __name__ == "__main__":
    sys.exit(main())
