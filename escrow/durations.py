"""The duration syntax shared by policies and scenario files: `Ns`, `Nm`, `Nh`, `Nd` or a
concatenation such as `1d2h30m`."""

from __future__ import annotations

import re
from datetime import timedelta

_PART = re.compile(r"(\d+)([dhms])")
_WHOLE = re.compile(r"(?:\d+[dhms])+")
_UNIT_SECONDS = {"d": 86400, "h": 3600, "m": 60, "s": 1}
# The longest policy duration, scenario wait or query age: beyond it a duration is a typo,
# and it keeps every deadline (a time up to escrow.clock.LATEST plus this, doubled) in range.
MAX_DURATION = timedelta(days=3650)


def parse_duration(text: str) -> timedelta:
    text = text.strip()
    if not _WHOLE.fullmatch(text):
        raise ValueError(f"not a duration: {text!r} (use e.g. 15m, 2d, 1d2h30m)")
    if len(text) > 64:  # also keeps int() below its limit on digits
        raise ValueError(f"duration too long: {text[:20]!r}...")
    seconds = sum(int(n) * _UNIT_SECONDS[unit] for n, unit in _PART.findall(text))
    try:
        return timedelta(seconds=seconds)
    except OverflowError:  # a typed refusal, not a traceback, for absurd input
        raise ValueError(f"duration too long: {text!r}") from None


def bounded_duration(text: str) -> timedelta:
    """`parse_duration`, refusing anything longer than MAX_DURATION (ValueError)."""
    duration = parse_duration(text)
    if duration > MAX_DURATION:
        raise ValueError(
            f"{text.strip()!r} is longer than the longest allowed, {MAX_DURATION.days}d"
        )
    return duration


def format_duration(value: timedelta) -> str:
    seconds = int(value.total_seconds())
    if seconds == 0:
        return "0s"
    parts = []
    for unit, size in _UNIT_SECONDS.items():
        count, seconds = divmod(seconds, size)
        if count:
            parts.append(f"{count}{unit}")
    return "".join(parts)
