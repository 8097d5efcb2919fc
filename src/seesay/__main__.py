"""``python -m seesay`` = the ``seesay`` command."""

import sys

from .cli import main

sys.exit(main())
