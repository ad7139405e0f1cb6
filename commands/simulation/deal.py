"""One simulated order and the beats its story is told in.

The stories and the driver both speak in these terms: the driver makes the deal and schedules
its beats, a story yields them. Every chance a story takes is drawn from its deal's own seeded
random stream, never a shared one, so that the same seed tells the same story.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import timedelta
from decimal import Decimal
from typing import Any

ZERO = timedelta(0)
CENT = Decimal("0.01")


@dataclass(frozen=True, slots=True)
class Act:
    """One command, `after` the story's previous step."""

    after: timedelta
    command: str
    fields: dict[str, Any]
    expect: str | None = None  # the refusal code the rules require
    tolerate: frozenset[str] = frozenset()  # refusals another order may cause (already lifted)
    after_deadline: bool = False  # run the scheduler first: a deadline this step needs is due


@dataclass(frozen=True, slots=True)
class Settle:
    """The story is over: count how its order and appeals ended."""

    after: timedelta = ZERO


Beat = Act | Settle


@dataclass(slots=True)
class Deal:
    """One order being simulated, with what its story needs to know."""

    n: int
    ref: str
    seller: str
    buyer: str
    agent: str
    rng: random.Random
    asset: str
    amount: Decimal
    price: Decimal
    fiat: str
    method: str
    instant: bool
    payment_window: timedelta
    reference_price: Decimal | None = None
    supervisor: str | None = None  # handles a complaint: never the deal's own agent (E3)
    exists: bool = True
    appeals: list[str] = field(default_factory=list)

    @property
    def fiat_amount(self) -> Decimal:
        return self.amount * self.price

    def new_appeal(self) -> str:
        ref = f"{self.ref}-a{len(self.appeals) + 1}"
        self.appeals.append(ref)
        return ref

    def within(self, low: timedelta, high: timedelta) -> timedelta:
        seconds = self.rng.randint(int(low.total_seconds()), int(high.total_seconds()))
        return timedelta(seconds=seconds)

    def chance(self, p: float) -> bool:
        return self.rng.random() < p

    def share(self, value: Decimal, low: int, high: int) -> Decimal:
        """Between low% and high% of `value`, to the cent, at least one cent."""
        part = (value * self.rng.randint(low, high) / 100).quantize(CENT)
        return max(part, CENT)
