"""`python -m nlptransfer.run recipe=NAME [key=value ...]`: the run command (its code is `nlptransfer.cli.run`).

This module is only the `python -m` entry point. Importing it must not hide the Python API's
`nlptransfer.run` function, so the module itself calls through to it: `nlptransfer.run(cfg)` works
whichever of the two the name holds.
"""

import sys
import types

from .cli.run import main, parse_args, run_recipe  # noqa: F401


class _CallsTheApi(types.ModuleType):
    def __call__(self, *args, **kwargs):
        from .api import run

        return run(*args, **kwargs)


sys.modules[__name__].__class__ = _CallsTheApi

if __name__ == "__main__":
    sys.exit(main())
