"""``python -m molexp``: the ``molexp`` command (``molexp --help``)."""

import sys

from .cli import main

sys.exit(main())
