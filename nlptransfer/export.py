"""`python -m nlptransfer.export ...`: the export command (its code is `nlptransfer.cli.export`, the export
`nlptransfer.runtimes`)."""

import sys

from .cli.export import main  # noqa: F401

if __name__ == "__main__":
    sys.exit(main())
