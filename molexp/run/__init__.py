"""The run: from an executor's call to task outcomes.

``session`` (one run: set-up, iteration, tear-down) -> ``compile`` (TaskGraph -> Dask tasks) -> ``engine`` (the
driver loop over a backend's events) -> ``runtime`` (what runs on a worker: one task with its retries, timeout,
memory limit, logs), with ``spawn`` (cheap process start), ``procs`` (no process outlives its task), ``affinity``
(CPU pinning), ``progress`` (callbacks and bar) and ``config`` (ExecutionConfig).
"""
