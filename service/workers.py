"""gunicorn's sync worker, which on SIGTERM first answers the connections already queued for it.

On SIGTERM gunicorn's master closes its copy of the listening socket and tells
the workers to stop; a sync worker finishes the request in hand and exits.
Connections the kernel had already accepted into the listen backlog, waiting
for a worker, were then reset when the last worker closed the socket: a
client that connected a moment before a restart got a connection reset, not
an answer. This worker, once told to stop, keeps accepting without waiting
until the backlog is empty (within half of ``graceful_timeout``) and answers
each of those requests, each with ``Connection: close``; then it exits. A
client that connects after that finds the port closed and can retry (the
proxy moves it to another replica).
"""

from __future__ import annotations

import errno
import time

from gunicorn.workers.sync import SyncWorker as _SyncWorker

_EMPTY = (errno.EAGAIN, errno.EWOULDBLOCK, errno.ECONNABORTED)


class SyncWorker(_SyncWorker):
    def run(self) -> None:
        super().run()  # returns once told to stop, after the request in hand
        self.drain()

    def drain(self) -> None:
        """Answer the connections waiting in the backlog, until none is or time is up."""
        deadline = time.monotonic() + max(1.0, self.cfg.graceful_timeout / 2)
        answered = 0
        while time.monotonic() < deadline:
            progressed = False
            for listener in self.sockets:
                try:
                    self.accept(listener)  # accepts one connection and answers its request
                except OSError as exc:
                    if exc.errno in _EMPTY:
                        continue
                    self.log.warning("draining the backlog: %s", exc)
                    return
                answered += 1
                progressed = True
            if not progressed:
                break
        if answered:
            self.log.info("answered %d queued connections before exiting", answered)
