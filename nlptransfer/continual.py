"""`python -m nlptransfer.continual --config stages.yaml`: learning over stages (its code is
`nlptransfer.cli.continual`, the library side `nlptransfer.stages`)."""

import sys

from .cli.continual import main  # noqa: F401

if __name__ == "__main__":
    sys.exit(main())
