"""`python -m nlptransfer.distill TEACHER [TEACHER ...] [key=value ...]`: the distillation command (its code is
`nlptransfer.cli.distill`)."""

import sys

from .cli.distill import main  # noqa: F401

if __name__ == "__main__":
    sys.exit(main())
