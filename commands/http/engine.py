"""The one engine a server process works with, opened when the store first answers.

A service must come up (and say so on /healthz) while its database is still starting or
briefly away; so the engine is opened on first use, not at import, and an attempt that finds
the store unreachable is retried by a later request rather than ending the process.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

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


@dataclass
class Engine:
    store: str
    keys: Keys
    metrics: CollectorRegistry | None = None  # where the engine publishes its metrics
    policy: Policy | None = None  # None: the defaults of rules.md
    _escrow: Escrow | None = None
    _history: History | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _failed_at: float = 0.0
    _failure: str = ""

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
        if self._escrow is not None:
            self._escrow.close()
            self._escrow = None
