"""The state a run leaves behind and reads back.

``result`` (TaskStatus, TaskResult, Results), ``journal`` (the durable record in a checkpoint directory),
``checkpoint`` (the journal seen from a run: resume), ``uptodate`` (why a task runs or is reused), ``files`` and
``filehash`` (declared inputs/outputs and their content hashes), ``durations`` (learned task durations).
"""
