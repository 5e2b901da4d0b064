"""Public import path ``molexp.visualize`` (shown in docs/reports.md): pictures of a graph and of a run.

The code lives in ``molexp.views.visualize``; this module only re-exports its public names.
"""

from .views.visualize import *  # noqa: F401,F403  (exactly the names of its __all__)
from .views.visualize import __all__  # noqa: F401
