"""`python -m nlptransfer.curve ...`: the curve command (its code is `nlptransfer.cli.curve`)."""

import sys

from .cli.curve import main  # noqa: F401

if __name__ == "__main__":
    sys.exit(main())
