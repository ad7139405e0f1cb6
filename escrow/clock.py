"""Time is injected so that replays, scenarios and tests are exact.

Nothing in the domain reads the wall clock: commands are stamped with the engine's clock and
deadlines compare against it.
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from typing import Protocol

from escrow.errors import ValidationError


class Clock(Protocol):
    def now(self) -> datetime: ...


class SystemClock:
    """Production clock: UTC wall time."""

    def now(self) -> datetime:
        return datetime.now(tz=UTC)


class ManualClock:
    """A clock that moves only when told to: scenarios, tests and simulations."""

    def __init__(self, start: datetime) -> None:
        self._now = as_utc(start)
        self._lock = threading.Lock()

    def now(self) -> datetime:
        return self._now

    def advance(self, by: timedelta) -> datetime:
        if by < timedelta(0):
            raise ValueError("a clock never goes back")
        with self._lock:
            self._now += by
            return self._now

    def set(self, to: datetime) -> datetime:
        to = as_utc(to)
        with self._lock:
            if to < self._now:
                raise ValueError("a clock never goes back")
            self._now = to
            return self._now


def as_utc(moment: datetime) -> datetime:
    if moment.tzinfo is None:
        raise ValueError(f"time {moment.isoformat()} has no time zone")
    return moment.astimezone(UTC)


def utc(moment: object, field: str) -> datetime:
    """A caller's time as UTC. A naive one is refused (which zone it meant cannot be known),
    as a typed refusal naming the argument."""
    if not isinstance(moment, datetime) or moment.tzinfo is None:
        raise ValidationError(f"{field}: a time with a time zone (e.g. ...+00:00), got {moment!r}")
    return moment.astimezone(UTC)
