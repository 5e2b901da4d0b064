"""The one exception tree of molexp.

::

    MolexpError
    ├── ValidationError (ValueError)     bad input, raised before any task runs
    │   ├── TaskDefinitionError          a task's own fields are wrong (name, commands, deps, ...)
    │   ├── GraphError                   duplicate name, missing or self dependency
    │   │   └── CycleError               the dependencies form a cycle (``.cycle`` lists it)
    │   ├── TemplateError                a ``$var`` placeholder has no value
    │   ├── SweepError                   a parameter space or sweep is malformed
    │   ├── FileDeclarationError         an input nobody makes, an output declared twice (``inputs=``/``outputs=``)
    │   └── ConfigError                  an unknown option, or a value of the wrong type or range
    ├── CheckpointError (ValueError)     a checkpoint file is corrupt, truncated or foreign (``.path``)
    │   └── CheckpointLocked             another live run holds the checkpoint directory
    ├── ExecutionError (RuntimeError)    ``run()`` with ``error_propagation=True`` saw a failure (``.results``)
    └── ClusterError (RuntimeError)      the Dask cluster could not be reached, or was lost mid-run

User errors subclass ``ValueError`` so code that already guards input with ``except ValueError`` keeps
working; every message names the task, option or file at fault, what was expected and what was given.
"""

from __future__ import annotations


class MolexpError(Exception):
    """Base of every error molexp raises on purpose. Catch this to catch them all."""


class ValidationError(MolexpError, ValueError):
    """Input is wrong; raised before any task runs. Fix the input named in the message."""


class TaskDefinitionError(ValidationError):
    """Raised by a task's constructor (or the graph) when a field has the wrong type or value."""


class GraphError(ValidationError):
    """Raised by ``TaskGraph`` validation: a duplicate name, a missing or a self dependency."""


class CycleError(GraphError):
    """Raised when dependencies form a cycle; ``cycle`` is the list of names, first == last."""

    def __init__(self, message: str, cycle: list[str]):
        super().__init__(message)
        self.cycle = cycle


class TemplateError(ValidationError):
    """Raised when a shell command's ``$var`` has no value in the task's kwargs or the run's params."""


class SweepError(ValidationError):
    """Raised by ``molexp.model.params`` (spaces, samplers, ``sweep``) and by a malformed ``sweep:`` in YAML."""


class FileDeclarationError(ValidationError):
    """Raised before a run starts when declared files cannot work: an input that does not exist and that no
    task declares as an output, an output two tasks declare, a path that is both a task's input and output."""


class ConfigError(ValidationError):
    """Raised by ``configure()`` for an unknown option or a bad value; the message names the option."""


class CheckpointError(MolexpError, ValueError):
    """A checkpoint file cannot be used (corrupt, truncated, another experiment's), or cannot be written
    during a run (a full disk). ``path`` names it; ``results`` holds the run's results when a run stopped
    for it (running tasks were terminated; the journal is intact up to the failure, so a resume finishes).

    molexp never deletes or overwrites such a file: move it away, or point ``checkpoint_dir`` elsewhere.
    """

    def __init__(self, message: str, path: str | None = None):
        super().__init__(message)
        self.path = path
        self.results = None


class CheckpointLocked(CheckpointError):
    """Another live run holds the checkpoint directory's lock. Wait for it, or use another directory."""


class ExecutionError(MolexpError, RuntimeError):
    """Raised by ``run()`` when ``error_propagation=True`` and a task failed; ``results`` holds every outcome."""

    def __init__(self, message: str, results=None):
        super().__init__(message)
        self.results = results


class ClusterError(MolexpError, RuntimeError):
    """The Dask cluster could not be reached, or was lost during a run. The checkpoint (if any) is intact.
    ``results`` holds the run's results when it was lost mid-run (None when nothing ran)."""

    results = None
