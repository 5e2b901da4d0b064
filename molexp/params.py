"""Public import path ``molexp.params`` (shown in docs/sweeps.md): parameter spaces, samplers and sweeps.

The code lives in ``molexp.model.params`` (and ``expand_sweep``, the YAML ``sweep:`` section, in
``molexp.model.experiment``); this module only re-exports their public names.
"""

from .model.experiment import expand_sweep
from .model.params import *  # noqa: F401,F403  (exactly the names of its __all__)
from .model.params import __all__ as _names

__all__ = [*_names, "expand_sweep"]
