"""`python -m nlptransfer.compare ...`: the compare command (its code is `nlptransfer.cli.compare`)."""

import sys

from .cli.compare import main  # noqa: F401

if __name__ == "__main__":
    sys.exit(main())
