"""The one engine a server process works with, opened when the store first answers.

A service must come up (and say so on /healthz) while its database is still starting or
briefly away; so the engine is opened on first use, not at import, and an attempt that finds
the store unreachable is retried by a later request rather than ending the process.
"""

from __future__ import annotations

import asyncio
import functools
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import ParamSpec, TypeVar

from prometheus_client import CollectorRegistry

from escrow.clock import SystemClock
from escrow.commands.api import Escrow
from escrow.commands.audit.history import History
from escrow.commands.http.keys import Keys
from escrow.commands.staffing import appoint
from escrow.policy import Policy


class StoreUnavailable(Exception):
    """The store did not answer; no command was run."""


RETRY_AFTER = 5.0  # seconds between two attempts to open an unreachable store
THREADS = 40  # blocking calls at once (a command waits on its store): Starlette's own default

P = ParamSpec("P")
T = TypeVar("T")


@dataclass
class Engine:
    store: str
    keys: Keys
    metrics: CollectorRegistry | None = None  # where the engine publishes its metrics
    policy: Policy | None = None  # None: the defaults of rules.md
    _escrow: Escrow | None = None
    _history: History | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _threads: ThreadPoolExecutor = field(
        default_factory=lambda: ThreadPoolExecutor(THREADS, thread_name_prefix="escrow-http")
    )
    _failed_at: float = 0.0
    _failure: str = ""

    async def call(self, work: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """`work` on the engine's threads, so the event loop keeps serving while a command
        waits on its store. The executor straight from asyncio: Starlette's
        `run_in_threadpool` adds AnyIO's limiter and cancel shielding, ~40 us a call."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._threads, functools.partial(work, *args, **kwargs))

    def open_soon(self) -> None:
        """Open the store now if it answers, without holding up the start (/healthz)."""
        self._threads.submit(self.ready)

    def get(self) -> Escrow:
        escrow = self._escrow
        if escrow is not None:
            return escrow
        with self._lock:
            if self._escrow is None:
                if time.monotonic() - self._failed_at < RETRY_AFTER:
                    raise StoreUnavailable(self._failure)
                try:
                    escrow = Escrow(
                        self.store, policy=self.policy, clock=SystemClock(), metrics=self.metrics
                    )
                    try:  # the keys file's staff, recorded once whichever server starts first
                        appoint(escrow, self.keys.agents, self.keys.supervisors)
                    except BaseException:
                        escrow.close()
                        raise
                    self._escrow = escrow
                except Exception as e:  # whatever the driver raises: the store is not there
                    self._failed_at, self._failure = time.monotonic(), str(e)
                    raise StoreUnavailable(self._failure) from e
            return self._escrow

    def history(self) -> History:
        """The log reader over the engine's own application (no second connection pool)."""
        if self._history is None:
            self._history = History(self.get().app)
        return self._history

    def ready(self) -> bool:
        try:
            self.get().app.recorder.max_notification_id()
        except Exception:
            return False
        return True

    def close(self) -> None:
        self._threads.shutdown(wait=False)
        if self._escrow is not None:
            self._escrow.close()
            self._escrow = None
