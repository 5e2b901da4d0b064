"""molexp v2's import path ``molexp.param``: the same names as ``molexp.params`` (see docs/migrating.md)."""

from .params import *  # noqa: F401,F403
from .params import __all__  # noqa: F401
