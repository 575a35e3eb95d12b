"""What a worker does the moment it is told to stop (SIGTERM, SIGINT).

The server stops taking connections and waits for the open responses before it
shuts the app down (granian: up to ``workers_kill_timeout``). A request ends by
itself; a live stream never does. So at the signal, not at the app's shutdown,
every open stream is ended (an ``end`` event, then the response closes: an
EventSource reconnects, with its Last-Event-ID, to whichever instance answers),
and a stream opened after it ends at once.
"""

from __future__ import annotations

import asyncio
import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import FrameType

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)
# The reason the streams' ``end`` event gives.
STOPPING = "shutting down"


@contextmanager
def on_stop_signal(callback: Callable[[], None]) -> Iterator[None]:
    """Call ``callback`` in the running loop when a stop signal arrives, for as
    long as the block lasts; the server's own handler runs as before.

    Python's handler is chained, not the loop's: the server registered its own
    with ``loop.add_signal_handler``, which has no public way to add a second, and
    the loop hears the signal through its wake-up fd whichever Python handler is set.
    """
    if threading.current_thread() is not threading.main_thread():
        yield  # signals reach the main thread only
        return
    loop = asyncio.get_running_loop()
    chained: dict[int, Callable[[int, FrameType | None], object]] = {}

    def notify(signum: int, frame: FrameType | None) -> None:
        loop.call_soon_threadsafe(callback)
        chained[signum](signum, frame)

    for stop in STOP_SIGNALS:
        previous = signal.getsignal(stop)
        # None, SIG_DFL, SIG_IGN: no server handler to keep, so none is put in front of it.
        if callable(previous):
            chained[stop] = previous
            signal.signal(stop, notify)
    try:
        yield
    finally:
        for signum, handler in chained.items():
            if signal.getsignal(signum) is notify:
                signal.signal(signum, handler)
