"""`python -m nlptransfer.ensemble RUN1 RUN2 ...`: the ensemble command (its code is `nlptransfer.cli.ensemble`)."""

import sys

from .cli.ensemble import main  # noqa: F401

if __name__ == "__main__":
    sys.exit(main())
