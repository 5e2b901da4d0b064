"""Dask futures handled on the client's event loop thread: watching them (``as_completed_of``, ``track``) and
dropping them (``release_later``) without waking the loop once per future."""

from __future__ import annotations


def as_completed_of(client, futures=()):
    """``distributed.as_completed`` on ``client``'s event loop.

    Without ``loop=`` it tracks each future on the loop of ``distributed.default_client()``: the newest
    client of the process, not necessarily the one that made the futures (dask/distributed#4357). When that
    other client closes (a user's second client, one left open whose scheduler went away) its loop stops
    and the futures handed to it are never reported: the collector would wait forever."""
    from distributed import as_completed

    ac = as_completed(loop=client.loop)
    if futures:
        track(client, ac, futures)
    return ac


def track(client, ac, futures) -> None:
    """``ac.update(futures)``, run on the client's event loop thread.

    ``as_completed`` hands each future to the loop with ``call_soon_threadsafe``, as ``Future.release`` does:
    from another thread each call wakes the loop, which then competes for the GIL with the caller (measured
    0.2 ms a future, 0.2 s before 1,000 tasks could start); on the loop's own thread it costs microseconds."""
    futures = list(futures)

    async def update():
        ac.update(futures)

    client.sync(update)


def release_later(client, futures) -> None:
    """Drop the last references to ``futures`` on the client's event loop thread (see ``track``): one
    wake-up of the loop instead of one per future."""
    futures = list(futures)
    try:
        client.loop.add_callback(futures.clear)
    except Exception:  # the client is closing: its futures go with it
        pass
