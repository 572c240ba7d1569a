"""SIGTERM as an exception, so ``finally`` blocks remove half-written outputs before the process ends.

A parent that cancels an analysis (the Slicer module's Cancel, a batch scheduler, ``kill``) sends SIGTERM. By
default SIGTERM kills Python without running cleanup; inside :func:`sigterm_raises` it raises
:class:`Terminated` (a ``KeyboardInterrupt``, so ``except Exception`` blocks do not swallow it) at the next
Python instruction. Only the front end installs it (the CLI); the core never touches signal handlers, which
belong to the embedding application.
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

log = logging.getLogger(__name__)

#: exit status of a process ended by SIGTERM (128 + 15), as shells report it
EXIT_TERMINATED = 128 + signal.SIGTERM


class Terminated(KeyboardInterrupt):
    """The process received SIGTERM."""


@contextmanager
def sigterm_raises() -> Iterator[None]:
    """Within the block, SIGTERM raises :class:`Terminated` once; a second SIGTERM during cleanup is ignored.

    Outside the main thread (where Python cannot install handlers) the block runs unchanged. The previous
    handler is restored on exit.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: FrameType | None) -> None:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # cleanup must not be interrupted in turn
        log.warning("SIGTERM received: stopping and removing partial output")
        raise Terminated(f"terminated by signal {signum}")

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
