"""``python -m molexp.cli``: the ``molexp`` command."""

import sys

from . import main

sys.exit(main())
