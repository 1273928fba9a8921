"""`python -m nlptransfer.active ...`: the active-learning command (its code is `nlptransfer.cli.active`)."""

import sys

from ..cli.active import main

if __name__ == "__main__":
    sys.exit(main())
