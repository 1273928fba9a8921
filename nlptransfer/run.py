"""`python -m nlptransfer.run recipe=NAME [key=value ...]`: the run command (its code is `nlptransfer.cli.run`).

Only the `python -m` entry point: `nlptransfer.run`, the attribute, stays the Python API's function even
once this module is imported (see `nlptransfer/__init__.py`).
"""

import sys

from .cli.run import main, parse_args, run_recipe  # noqa: F401

if __name__ == "__main__":
    sys.exit(main())
