"""Public import path ``molexp.params`` (shown in docs/sweeps.md): parameter spaces, samplers and sweeps.

The code lives in ``molexp.model.params``; this module only re-exports its public names.
"""

from .model.params import *  # noqa: F401,F403  (exactly the names of its __all__)
from .model.params import __all__  # noqa: F401
