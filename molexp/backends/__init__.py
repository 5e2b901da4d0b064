"""The Dask backends: where the tasks of a run execute.

``local`` (Dask's threaded scheduler, the default), ``distributed`` (a ``distributed`` cluster: submission as
inputs finish, outcomes), ``cluster`` (which Dask a run uses; dask-jobqueue specs), ``cluster_start``,
``cluster_cancel`` and ``adaptive_policy`` (the adaptive executor's pure policy).
"""
