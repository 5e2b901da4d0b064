"""Public import path ``molexp.journal`` (shown in docs/api.md and docs/reports.md): reading a checkpoint.

The code lives in ``molexp.state.journal``; this module only re-exports its public names.
"""

from .state.journal import find_checkpoint_dir, read_state, read_value

__all__ = ["find_checkpoint_dir", "read_state", "read_value"]
