"""`python -m nlptransfer.sweep ...`: the sweep command (its code is `nlptransfer.cli.sweep`, the search
`nlptransfer.tuning`)."""

import sys

from .cli.sweep import main  # noqa: F401

if __name__ == "__main__":
    sys.exit(main())
