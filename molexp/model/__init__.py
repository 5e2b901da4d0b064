"""The model: what an experiment is, before anything runs.

``task`` (Task, LocalTask, PythonTask, ``@task``), ``graph`` (TaskGraph: validation, order, critical path),
``experiment`` (Experiment, TaskPool, YAML), ``params`` (spaces, samplers, ``sweep``). Nothing here imports the
run, the backends or the state.
"""
