"""SIGTERM and SIGHUP taken as Ctrl-C while a verb runs something it must clean up after.

``timeout``, a CI job's cancel or a closed terminal end a console with SIGTERM or SIGHUP,
which would end it where it stood: an ``invoke``'s job left running on every host, the demo's
Redis and workers left behind. Inside :func:`as_interrupt` they raise :class:`Terminated`, a
``KeyboardInterrupt``, so the verb's own Ctrl-C path runs (stop, remove, stop the services),
and the command exits 128 + the signal's number, as a shell reports a process it killed.
"""

from __future__ import annotations

import contextlib
import errno
import signal
import threading
from collections.abc import Iterator
from typing import Any

SIGNALS = tuple(getattr(signal, name) for name in ("SIGTERM", "SIGHUP") if hasattr(signal, name))


class Terminated(KeyboardInterrupt):
    """SIGTERM or SIGHUP, raised where a Ctrl-C would be."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


@contextlib.contextmanager
def as_interrupt() -> Iterator[None]:
    """Within the block, SIGTERM and SIGHUP raise :class:`Terminated` (main thread only: a
    signal handler can be set nowhere else, and the block then runs as it is); one this
    process ignores (``nohup``) stays ignored."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: Any) -> None:
        raise Terminated(signum)

    # one ignored (nohup's SIGHUP, a service manager's choice) stays ignored
    taken = [s for s in SIGNALS if signal.getsignal(s) is not signal.SIG_IGN]
    previous = {s: signal.signal(s, handler) for s in taken}
    try:
        yield
    finally:
        for s, old in previous.items():
            signal.signal(s, old)


def reader_gone(exc: OSError) -> bool:
    """Whether ``exc`` says no one reads the output any more (a hung-up terminal, a closed
    pipe), or came while an interrupt was being handled."""
    return exc.errno in (errno.EIO, errno.EPIPE) or isinstance(exc.__context__, KeyboardInterrupt)
