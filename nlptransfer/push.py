"""`python -m nlptransfer.push ...`: the push command (its code is `nlptransfer.cli.push`)."""

import sys

from .cli.push import main  # noqa: F401

if __name__ == "__main__":
    sys.exit(main())
