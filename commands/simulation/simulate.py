"""A seeded, reproducible workload through the public API, to fill a store like a busy exchange.

Orders arrive one after another on a manual clock; each follows a *story* chosen by the seed:
most complete directly, some expire unpaid or are cancelled, about a third are appealed, with
every reason of rules.md and every way an appeal ends (release, cancel, no outcome, withdrawn
and re-opened, deadlines firing, refunds confirmed or refused, sanctions applied and lifted).
Stories run interleaved in simulated time, so deadlines fire (`tick`) while other orders go on.

Only the orders in flight are held in memory; everything else is counted as it happens, so
the workload can fill a store with millions of events. The same seed on a fresh store gives
the same history and the same summary: every decision comes from the seed (one random stream
for arrivals and parties, one per order for its story), never from the wall clock.
"""

from __future__ import annotations

import heapq
import random
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from escrow.clock import ManualClock
from escrow.commands.api import Escrow
from escrow.commands.simulation.deal import Act, Beat, Deal, Settle
from escrow.commands.simulation.stories import MIX, TICK_EVERY, Story, suspended_attempt
from escrow.commands.staffing import appoint
from escrow.errors import EscrowError, NotFound, StoreError
from escrow.views import Outcome
from escrow.vocabulary import Role

START = datetime(2026, 1, 1, tzinfo=UTC)
AGENTS = ("agent-ana", "agent-ben", "agent-chen")
SUPERVISORS = ("agent-ana", "agent-chen")  # E3: complaints go to one who did not decide
MEAN_ARRIVAL_SECONDS = 20  # one new order every 20 s of simulated time, on average

Progress = Callable[[int, int], None]  # (orders finished, events recorded so far)


class SimulationError(Exception):
    """The engine answered a story step otherwise than the rules say it must."""


# --- the summary ----------------------------------------------------------------------------


@dataclass
class Summary:
    seed: int
    orders: int
    commands: int = 0
    events: int = 0
    final_states: Counter[str] = field(default_factory=Counter)
    appeals: Counter[tuple[str, str]] = field(default_factory=Counter)  # (reason, ending)
    sanctions_applied: Counter[str] = field(default_factory=Counter)
    sanctions_lifted: Counter[str] = field(default_factory=Counter)
    deadlines_fired: Counter[str] = field(default_factory=Counter)
    refusals: Counter[str] = field(default_factory=Counter)
    locked: dict[str, Decimal] = field(default_factory=dict)  # per asset, every order created
    simulated_until: datetime = START
    in_flight: int = 0  # orders whose story the end of the simulation cut short
    seconds: float = 0.0

    @property
    def rate(self) -> float:
        """Events recorded per second of wall time."""
        return self.events / self.seconds if self.seconds > 0 else 0.0

    def counts(self) -> dict[str, Any]:
        """Everything the seed decides (no timings): equal for equal seeds on fresh stores."""
        return {
            "seed": self.seed,
            "orders": self.orders,
            "commands": self.commands,
            "events": self.events,
            "final_states": dict(sorted(self.final_states.items())),
            "appeals": {
                f"{reason} -> {ending}": n for (reason, ending), n in sorted(self.appeals.items())
            },
            "sanctions_applied": dict(sorted(self.sanctions_applied.items())),
            "sanctions_lifted": dict(sorted(self.sanctions_lifted.items())),
            "deadlines_fired": dict(sorted(self.deadlines_fired.items())),
            "refusals": dict(sorted(self.refusals.items())),
            "locked": {asset: str(v) for asset, v in sorted(self.locked.items())},
            "in_flight": self.in_flight,
            "simulated_until": self.simulated_until.isoformat(),
        }

    def as_dict(self) -> dict[str, Any]:
        return {**self.counts(), "seconds": round(self.seconds, 3), "rate": round(self.rate, 1)}


# --- the driver -----------------------------------------------------------------------------

ASSETS = (  # asset, share, amount range (units of 10^-places), places, price range, price places
    ("USDT", 0.75, (1_000, 500_000), 2, (88, 99), 2),
    ("BTC", 0.15, (50_000, 20_000_000), 8, (55_000, 65_000), 0),
    ("ETH", 0.10, (1_000, 500_000), 5, (2_000, 3_500), 0),
)
METHODS = (("bank_transfer", False), ("sepa_instant", True), ("card", True), ("wire", False))


class _Driver:
    def __init__(
        self,
        engine: Escrow,
        orders: int,
        seed: int,
        progress: Progress | None,
        settle: bool = True,
    ) -> None:
        if not isinstance(engine.clock, ManualClock):
            raise TypeError("simulate needs an engine on a ManualClock (simulated time)")
        staff = engine.staff()
        if not staff:
            raise ValueError("simulate needs an engine with at least one customer-service agent")
        if orders < 1:
            raise ValueError("simulate at least one order")
        self.engine = engine
        self.clock: ManualClock = engine.clock
        self.orders = orders
        self.seed = seed
        self.progress = progress
        self.rng = random.Random(seed)
        self.prefix = f"s{seed}-"
        self.agents = sorted(staff)
        self.supervisors = sorted(n for n, role in staff.items() if role == Role.SUPERVISOR)
        self.pool = max(10, orders // 8)
        self.blocked: dict[str, datetime | None] = {}  # trader -> until (None: until lifted)
        self.summary = Summary(seed=seed, orders=orders)
        self.settle = settle
        self.next_tick = self.clock.now()
        self.heap: list[tuple[datetime, int, Deal, Iterator[Beat], Beat]] = []
        self.seq = 0

    # -- time --

    def _tick(self) -> None:
        self._count_fired(self.engine.tick())
        self.next_tick = self.clock.now() + TICK_EVERY

    def _move_to(self, moment: datetime) -> None:
        if moment > self.clock.now():
            self.clock.set(moment)
        if self.clock.now() >= self.next_tick:
            self._tick()

    # -- parties --

    def _is_blocked(self, trader: str) -> bool:
        if trader not in self.blocked:
            return False
        until = self.blocked[trader]
        return until is None or until > self.clock.now()

    def _pick(self, other: str | None = None) -> str:
        for _ in range(20):
            name = f"{self.prefix}t{self.rng.randrange(self.pool)}"
            if name != other and not self._is_blocked(name):
                return name
        self.pool += 1  # everyone drawn was sanctioned: a new trader joins
        return f"{self.prefix}t{self.pool - 1}"

    def _blocked_trader(self) -> str | None:
        """A trader under a sanction now (for an O7 attempt); forgets lapsed sanctions."""
        candidates: list[str] = []
        for trader in list(self.blocked):
            if not self._is_blocked(trader):
                del self.blocked[trader]
            elif len(candidates) < 16:
                candidates.append(trader)
            else:
                break
        return candidates[self.rng.randrange(len(candidates))] if candidates else None

    def _refresh(self, trader: str) -> None:
        view = self.engine.trader(trader)
        if not view.sanctions:
            self.blocked.pop(trader, None)
            return
        ends = [s.expires_at for s in view.sanctions]
        self.blocked[trader] = None if None in ends else max(e for e in ends if e is not None)

    # -- deals --

    def _deal(self, n: int) -> tuple[Deal, Story]:
        rng = random.Random(f"{self.seed}:{n}")
        asset, _, (low, high), places, (plow, phigh), pplaces = self._asset()
        method, instant = METHODS[rng.randrange(len(METHODS))]
        story = self._story()
        offender = self._blocked_trader() if self.rng.random() < 0.02 else None
        if offender is not None:
            story = suspended_attempt
            seller = offender
        else:
            seller = self._pick()
        buyer = self._pick(other=seller)
        deal = Deal(
            n=n,
            ref=f"{self.prefix}o{n}",
            seller=seller,
            buyer=buyer,
            agent=(agent := self.agents[rng.randrange(len(self.agents))]),
            supervisor=next((s for s in self.supervisors if s != agent), None),
            rng=rng,
            asset=asset,
            amount=Decimal(rng.randint(low, high)).scaleb(-places),
            price=Decimal(rng.randint(plow, phigh)).scaleb(-pplaces),
            fiat="EUR" if rng.random() < 0.7 else "USD",
            method=method,
            instant=instant,
            payment_window=self.engine.policy.payment_window,
        )
        return deal, story

    def _asset(self) -> tuple[Any, ...]:
        roll = self.rng.random()
        for entry in ASSETS:
            roll -= entry[1]
            if roll < 0:
                return entry
        return ASSETS[0]

    def _story(self) -> Story:
        roll = self.rng.random() * sum(w for _, w in MIX)
        for story, weight in MIX:
            roll -= weight
            if roll < 0:
                return story
        return MIX[0][0]

    def _push(self, at: datetime, deal: Deal, beats: Iterator[Beat]) -> None:
        beat = next(beats, None) or Settle()
        self.seq += 1
        heapq.heappush(self.heap, (at + beat.after, self.seq, deal, beats, beat))

    # -- running --

    def run(self) -> Summary:
        started = time.perf_counter()
        first = f"{self.prefix}o0"
        try:
            self.engine.order(first)
        except NotFound:
            pass
        else:
            raise SimulationError(
                f"the store already holds order {first}: simulate seed {self.seed} "
                "on a fresh store, or choose another seed"
            )
        arrival = self.clock.now()
        last_arrival: datetime | None = None
        started_orders = finished = 0
        while started_orders < self.orders or self.heap:
            if started_orders < self.orders and (not self.heap or arrival <= self.heap[0][0]):
                self._move_to(arrival)
                deal, story = self._deal(started_orders)
                started_orders += 1
                self._push(arrival, deal, story(deal))
                if started_orders == self.orders:
                    last_arrival = arrival
                gap = int(self.rng.expovariate(1 / MEAN_ARRIVAL_SECONDS) * 1000)
                arrival += timedelta(milliseconds=gap)
                continue
            if not self.settle and last_arrival is not None and self.heap[0][0] > last_arrival:
                break  # the last order has arrived: what is still going on stays in flight
            at, _, deal, beats, beat = heapq.heappop(self.heap)
            self._move_to(at)
            if isinstance(beat, Settle):
                self._observe(deal)
                finished += 1
                if self.progress is not None:
                    self.progress(finished, self.summary.events)
                continue
            self._do(deal, beat)
            self._push(at, deal, beats)
        for _, _, deal, _, _ in sorted(self.heap, key=lambda entry: entry[:2]):
            self._observe(deal)  # in flight: counted in the state it stands in
            finished += 1
            if self.progress is not None:
                self.progress(finished, self.summary.events)
        self.summary.in_flight = len(self.heap)
        self.summary.simulated_until = self.clock.now()
        self.summary.seconds = time.perf_counter() - started
        return self.summary

    def _do(self, deal: Deal, act: Act) -> None:
        if act.after_deadline:
            self._tick()
        try:
            outcome = self.engine.run(act.command, act.fields)
        except StoreError:
            raise  # the store failed, not the story
        except EscrowError as e:
            if e.code == act.expect or e.code in act.tolerate:
                self.summary.refusals[e.code] += 1
                return
            raise SimulationError(
                f"{deal.ref}: {act.command} {act.fields} was refused ({e}) "
                f"at {self.clock.now().isoformat()}; the story expected "
                f"{act.expect or 'it to be accepted'}"
            ) from e
        if act.expect is not None:
            raise SimulationError(
                f"{deal.ref}: {act.command} {act.fields} was accepted; rules say {act.expect}"
            )
        self._count(outcome, act)
        if act.command == "create_order":
            locked = self.summary.locked
            locked[deal.asset] = locked.get(deal.asset, Decimal(0)) + deal.amount

    def _count(self, outcome: Outcome, act: Act) -> None:
        summary = self.summary
        summary.commands += 1
        summary.events += len(outcome.recorded)
        touched: set[str] = set()
        for r in outcome.recorded:
            if r.stream != "trader":
                continue
            touched.add(r.ref)
            if r.event == "Sanctioned":
                kind = {
                    "refuse_refund": "p2p_suspension",
                    "open_appeal": "trading_suspension_24h",
                    "confirm_reversal": "permanent_suspension",
                }.get(act.command, act.fields.get("kind", "?"))
                summary.sanctions_applied[kind] += 1
            elif r.event == "SanctionLifted":
                # an overturned complaint lifts what its appeal applied, of any kind (E4)
                summary.sanctions_lifted[act.fields.get("kind", "by_complaint")] += 1
        for trader in sorted(touched):
            self._refresh(trader)

    def _count_fired(self, fired: list[Outcome]) -> None:
        for outcome in fired:
            self.summary.deadlines_fired[outcome.command] += 1
            self.summary.events += len(outcome.recorded)
            for trader in sorted({r.ref for r in outcome.recorded if r.stream == "trader"}):
                self._refresh(trader)

    def _observe(self, deal: Deal) -> None:
        if not deal.exists:
            self.summary.final_states["refused (O7)"] += 1
            return
        self.summary.final_states[self.engine.order(deal.ref).state] += 1
        for ref in deal.appeals:
            try:
                appeal = self.engine.appeal(ref)
            except NotFound:
                continue  # in flight: the story named it, the simulation stopped before
            reason = f"{appeal.rule} {appeal.reason}"
            if appeal.state == "resolved":
                ending = f"resolved: {appeal.outcome}"
            elif appeal.state == "cancelled":
                ending = "withdrawn"
            else:
                ending = appeal.state
            self.summary.appeals[(reason, ending)] += 1


def simulate(
    engine: Escrow,
    orders: int,
    seed: int = 1,
    progress: Progress | None = None,
    settle: bool = True,
) -> Summary:
    """Run `orders` seeded order stories through `engine` (on a ManualClock, with agents).

    `settle` (the default here, which tests rely on): every story runs to its end, which
    takes weeks of simulated time (sanctions expire, complaints are answered). Not `settle`:
    the simulation stops when the last order arrives, and what is still going on then stays
    in flight (unpaid and paid orders, open appeals, running sanctions), as in the store of
    a live exchange, whose 30-day figures are then current at the simulated time.
    `progress(finished_orders, events_recorded)` is called as each order's story ends (or is
    cut). Raises SimulationError when the engine answers a step otherwise than the rules
    require.
    """
    return _Driver(engine, orders, seed, progress, settle).run()


def simulation_engine(store: str = "memory:", start: datetime = START) -> Escrow:
    """An engine ready for `simulate`: the given store, a manual clock, three agents, two of
    them supervisors."""
    engine = Escrow(store, clock=ManualClock(start))
    appoint(engine, AGENTS, SUPERVISORS)
    return engine
