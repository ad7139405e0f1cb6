"""Time is injected so that replays, scenarios and tests are exact.

Nothing in the domain reads the wall clock: commands are stamped with the engine's clock and
deadlines compare against it.
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from typing import Protocol

from escrow.errors import ValidationError

# The times a caller may give (a clock's start, `tick(now)`, `--at`, a scenario's start) and
# the furthest a clock may be moved. Every deadline is one of these plus a policy duration
# (at most 3650d, doubled for a severe ban), so with the years left up to 9999 no clock
# arithmetic can overflow Python's dates.
EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
LATEST = datetime(9000, 1, 1, tzinfo=UTC)


class Clock(Protocol):
    def now(self) -> datetime: ...


class SystemClock:
    """Production clock: UTC wall time."""

    def now(self) -> datetime:
        return datetime.now(tz=UTC)


class ManualClock:
    """A clock that moves only when told to: scenarios, tests and simulations."""

    def __init__(self, start: datetime) -> None:
        self._now = bounded(start, "clock start")
        self._lock = threading.Lock()

    def now(self) -> datetime:
        return self._now

    def advance(self, by: timedelta) -> datetime:
        if by < timedelta(0):
            raise ValueError("a clock never goes back")
        with self._lock:
            if by > LATEST - self._now:
                raise ValidationError(f"the clock cannot move past {LATEST:%Y-%m-%d}")
            self._now += by
            return self._now

    def set(self, to: datetime) -> datetime:
        to = bounded(to, "clock time")
        with self._lock:
            if to < self._now:
                raise ValueError("a clock never goes back")
            self._now = to
            return self._now


def bounded(moment: datetime, field: str) -> datetime:
    """`moment` in UTC, or a validation error naming `field` when it has no zone or lies
    outside EARLIEST..LATEST."""
    if not isinstance(moment, datetime):
        raise ValidationError(f"{field}: not a time: {moment!r}")
    if moment.tzinfo is None:
        raise ValidationError(f"{field}: time {moment.isoformat()} has no time zone")
    try:
        utc = moment.astimezone(UTC)
    except OverflowError:  # year 1 east of UTC, year 9999 west of it
        utc = None
    if utc is None or not EARLIEST <= utc <= LATEST:
        raise ValidationError(
            f"{field}: {moment.isoformat()} is outside {EARLIEST:%Y-%m-%d}..{LATEST:%Y-%m-%d}"
        )
    return utc
