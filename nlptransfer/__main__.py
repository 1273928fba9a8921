"""`python -m nlptransfer run|predict|push|compare|curve ...`."""

import sys

from .cli.main import main

sys.exit(main())
