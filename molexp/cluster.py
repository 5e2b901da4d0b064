"""Public import path ``molexp.cluster`` (shown in docs/slurm.md): making a dask-jobqueue cluster from a spec.

The code lives in ``molexp.backends.cluster``; this module only re-exports its public names.
"""

from .backends.cluster import make_cluster, walltime_seconds

__all__ = ["make_cluster", "walltime_seconds"]
