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
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from commands.api import Escrow
from escrow.clock import ManualClock
from escrow.errors import EscrowError, NotFound
from escrow.views import Outcome

START = datetime(2026, 1, 1, tzinfo=UTC)
AGENTS = ("agent-ana", "agent-ben", "agent-chen")
MEAN_ARRIVAL_SECONDS = 20  # one new order every 20 s of simulated time, on average
TICK_EVERY = timedelta(minutes=1)  # how often the simulated scheduler runs `tick`
ZERO = timedelta(0)
CENT = Decimal("0.01")

Progress = Callable[[int, int], None]  # (orders finished, events recorded so far)


class SimulationError(Exception):
    """The engine answered a story step otherwise than the rules say it must."""


# --- what stories are made of ---------------------------------------------------------------


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


def _m(minutes: float) -> timedelta:
    return timedelta(minutes=minutes)


def _h(hours: float) -> timedelta:
    return timedelta(hours=hours)


def _d(days: float) -> timedelta:
    return timedelta(days=days)


# --- steps shared by stories ----------------------------------------------------------------


def _create(d: Deal, expect: str | None = None) -> Act:
    fields: dict[str, Any] = {
        "order": d.ref,
        "seller": d.seller,
        "buyer": d.buyer,
        "asset": d.asset,
        "amount": str(d.amount),
        "price": str(d.price),
        "fiat": d.fiat,
        "payment_method": d.method,
        "instant": d.instant,
    }
    if d.reference_price is not None:
        fields["reference_price"] = str(d.reference_price)
    return Act(ZERO, "create_order", fields, expect=expect)


def _pay(d: Deal, paid: Decimal | None = None) -> Act:
    fields: dict[str, Any] = {"order": d.ref, "by": d.buyer}
    if paid is not None:
        fields["paid_amount"] = str(paid)
    return Act(d.within(_m(1), _m(10)), "mark_paid", fields)


def _on(after: timedelta, command: str, appeal: str, by: str, **more: Any) -> Act:
    return Act(after, command, {"appeal": appeal, "by": by, **more})


def _open(d: Deal, by: str, reason: str, after: timedelta | None = None) -> tuple[str, Act]:
    ref = d.new_appeal()
    fields = {"order": d.ref, "by": by, "reason": reason, "appeal": ref}
    return ref, Act(after or d.within(_m(15), _h(3)), "open_appeal", fields)


def _review(d: Deal, appeal: str) -> Act:
    return _on(d.within(_m(5), _h(8)), "start_review", appeal, d.agent)


def _resolve(d: Deal, appeal: str, outcome: str | None, expect: str | None = None) -> Act:
    more = {"outcome": outcome} if outcome else {}
    act = _on(d.within(_m(5), _h(4)), "resolve_appeal", appeal, d.agent, **more)
    return Act(act.after, act.command, act.fields, expect=expect)


def _lift(d: Deal, trader: str, kind: str, low: timedelta, high: timedelta) -> Act:
    fields = {"trader": trader, "by": d.agent, "kind": kind}
    return Act(d.within(low, high), "lift_sanction", fields, tolerate=frozenset({"invalid_state"}))


def _refund(d: Deal, appeal: str, amount: Decimal, refuse_share: float) -> Iterator[Beat]:
    """R1: CS asks, the seller reports and CS confirms, or the seller refuses (S1, lifted later)."""
    yield _on(d.within(_m(5), _h(2)), "request_refund", appeal, d.agent, amount=str(amount))
    if d.chance(refuse_share):
        yield _on(d.within(_m(30), _h(12)), "refuse_refund", appeal, d.seller)
        return
    reported = amount if d.chance(0.9) else max(amount - CENT, CENT)
    yield _on(
        d.within(_m(30), _h(12)),
        "report_refund",
        appeal,
        d.seller,
        amount=str(reported),
        reference=f"bank-{d.ref}",
    )
    yield _on(d.within(_m(10), _h(6)), "confirm_refund", appeal, d.agent)


def _refund_then_lift(
    d: Deal, appeal: str, amount: Decimal, refuse_share: float
) -> Generator[Beat, None, bool]:
    """`_refund`, telling the story whether the seller refused (then S1 is lifted later)."""
    refused = False
    for beat in _refund(d, appeal, amount, refuse_share):
        refused = refused or (isinstance(beat, Act) and beat.command == "refuse_refund")
        yield beat
    return refused


# --- stories --------------------------------------------------------------------------------


def completed(d: Deal) -> Iterator[Beat]:
    yield _create(d)
    yield _pay(d)
    if d.chance(0.03):  # O6: only the seller releases
        yield Act(_m(1), "release", {"order": d.ref, "by": d.buyer}, expect="not_authorized")
    yield Act(d.within(_m(1), _m(30)), "release", {"order": d.ref, "by": d.seller})
    if d.chance(0.06):  # A2: an appeal after the order closed changes nothing in it
        appeal, act = _open(d, d.buyer, "seller_payment_method_problem", d.within(_h(1), _d(3)))
        yield act
        yield _review(d, appeal)
        yield _on(_m(30), "add_evidence", appeal, d.buyer, description="bank statement")
        yield _resolve(d, appeal, None)
    yield Settle()


def expired(d: Deal) -> Iterator[Beat]:
    yield _create(d)
    if d.chance(0.25):  # O2: paying after the deadline is refused
        late = Act(
            d.payment_window + d.within(ZERO, _m(30)),
            "mark_paid",
            {"order": d.ref, "by": d.buyer},
            expect="deadline_passed",
        )
        yield late
        yield Settle(TICK_EVERY * 2)
    else:
        yield Settle(d.payment_window + TICK_EVERY * 2)


def cancelled(d: Deal) -> Iterator[Beat]:
    yield _create(d)
    if d.chance(0.5):
        yield _pay(d)
    yield Act(d.within(_m(1), _m(10)), "cancel_order", {"order": d.ref, "by": d.buyer})
    if d.chance(0.2):  # terminal states are final
        yield Act(_m(5), "release", {"order": d.ref, "by": d.seller}, expect="invalid_state")
    yield Settle()


def seller_not_releasing(d: Deal) -> Iterator[Beat]:
    """B1, and B1a when the price deviates from the reference price."""
    deviates = d.chance(0.3)
    if deviates:
        d.reference_price = d.price * Decimal("0.8")
    yield _create(d)
    yield _pay(d)
    appeal, act = _open(d, d.buyer, "seller_not_releasing")
    yield act
    if d.chance(0.3):  # A5
        release = {"order": d.ref, "by": d.seller}
        yield Act(_m(5), "release", release, expect="release_blocked_by_appeal")
    yield _on(d.within(_m(1), _h(1)), "add_evidence", appeal, d.buyer, description="receipt")
    yield _review(d, appeal)
    if not deviates:
        yield _resolve(d, appeal, "release")
        if d.chance(0.2):  # A3: the same issue cannot be appealed again
            fields = {
                "order": d.ref,
                "by": d.buyer,
                "reason": "seller_not_releasing",
                "appeal": f"{d.ref}-again",
            }
            yield Act(_h(2), "open_appeal", fields, expect="issue_already_resolved")
        yield Settle()
        return
    yield _resolve(d, appeal, "release", expect="price_deviation")
    refused = yield from _refund_then_lift(d, appeal, d.fiat_amount, 0.25)
    yield _resolve(d, appeal, "cancel")
    if refused:
        yield _lift(d, d.seller, "p2p_suspension", _d(1), _d(7))
    yield Settle()


def cancelled_after_payment(d: Deal) -> Iterator[Beat]:
    """B2: cancelled by mistake after paying; the seller refunds, or is suspended (S1)."""
    yield _create(d)
    yield _pay(d)
    yield Act(d.within(_m(1), _m(10)), "cancel_order", {"order": d.ref, "by": d.buyer})
    appeal, act = _open(d, d.buyer, "cancelled_after_payment", d.within(_m(10), _d(1)))
    yield act
    yield _review(d, appeal)
    refused = yield from _refund_then_lift(d, appeal, d.fiat_amount, 0.3)
    yield _resolve(d, appeal, None)
    if refused:
        yield _lift(d, d.seller, "p2p_suspension", _d(1), _d(7))
    yield Settle()


def amount_mismatch(d: Deal) -> Iterator[Beat]:
    """B3: the buyer overpaid; the refund is at most the overpayment (R3)."""
    extra = d.share(d.fiat_amount, 5, 50)
    yield _create(d)
    yield _pay(d, d.fiat_amount + extra)
    appeal, act = _open(d, d.buyer, "amount_mismatch")
    yield act
    yield _review(d, appeal)
    if d.chance(0.25):
        too_much = str(extra + 1)
        yield Act(
            _m(10),
            "request_refund",
            {"appeal": appeal, "by": d.agent, "amount": too_much},
            expect="amount_exceeds_limit",
        )
    amount = extra if d.chance(0.6) else max((extra / 2).quantize(CENT), CENT)
    refused = yield from _refund_then_lift(d, appeal, amount, 0.15)
    yield _resolve(d, appeal, "release")
    if refused:
        yield _lift(d, d.seller, "p2p_suspension", _d(1), _d(7))
    yield Settle()


def seller_payment_method_problem(d: Deal) -> Iterator[Beat]:
    """B4: after verification CS cancels."""
    yield _create(d)
    yield _pay(d)
    appeal, act = _open(d, d.buyer, "seller_payment_method_problem")
    yield act
    yield _review(d, appeal)
    yield _resolve(d, appeal, "cancel")
    yield Settle()


def _verbal_abuse(d: Deal, reporter: str, offender: str) -> Iterator[Beat]:
    """B5/C5: a partial ban on the offender; the order goes back to paid and is released."""
    yield _create(d)
    yield _pay(d)
    appeal, act = _open(d, reporter, "verbal_abuse")
    yield act
    if d.chance(0.05):  # A9: only the opener withdraws an appeal
        yield Act(
            _m(1),
            "cancel_appeal",
            {"appeal": appeal, "by": offender},
            expect="not_authorized",
        )
    if d.chance(0.3):  # A4: withdrawn, then opened again on the same issue
        yield _on(d.within(_m(5), _h(1)), "cancel_appeal", appeal, reporter)
        appeal, act = _open(d, reporter, "verbal_abuse", d.within(_m(10), _h(2)))
        yield act
    yield _review(d, appeal)
    severity = "severe" if d.chance(0.2) else "normal"
    yield Act(
        _m(10),
        "apply_sanction",
        {
            "trader": offender,
            "by": d.agent,
            "kind": "partial_ban",
            "severity": severity,
            "appeal": appeal,
        },
    )
    yield _resolve(d, appeal, None)
    yield Act(d.within(_m(1), _m(30)), "release", {"order": d.ref, "by": d.seller})
    yield Settle()


def buyer_verbal_abuse(d: Deal) -> Iterator[Beat]:
    yield from _verbal_abuse(d, d.buyer, d.seller)


def seller_verbal_abuse(d: Deal) -> Iterator[Beat]:
    yield from _verbal_abuse(d, d.seller, d.buyer)


def payment_not_received(d: Deal) -> Iterator[Beat]:
    """C1: proof within 2 days, or the deadline cancels; instant methods are decided directly."""
    yield _create(d)
    yield _pay(d)
    appeal, act = _open(d, d.seller, "payment_not_received")
    yield act
    yield _review(d, appeal)
    if d.instant:
        if d.chance(0.2):
            yield Act(
                _m(5),
                "request_payment_proof",
                {"appeal": appeal, "by": d.agent},
                expect="invalid_state",
            )
        yield _resolve(d, appeal, "release" if d.chance(0.6) else "cancel")
        yield Settle()
        return
    yield _on(d.within(_m(5), _h(2)), "request_payment_proof", appeal, d.agent)
    if d.chance(0.5):
        yield _on(d.within(_h(1), _h(40)), "submit_payment_proof", appeal, d.buyer, refs=["tx"])
        yield _resolve(d, appeal, "release")
        yield Settle()
        return
    late = _d(2) + TICK_EVERY * 2
    if d.chance(0.3):
        yield Act(
            late,
            "submit_payment_proof",
            {"appeal": appeal, "by": d.buyer},
            expect="deadline_passed",
        )
        yield Settle(TICK_EVERY)
    else:
        yield Settle(late)


def insufficient_payment(d: Deal) -> Iterator[Beat]:
    """C2: the buyer tops up (then release), or refuses (refund less fees, then cancel)."""
    shortfall = d.share(d.fiat_amount, 5, 30)
    paid = max(d.fiat_amount - shortfall, CENT)
    yield _create(d)
    yield _pay(d, paid)
    appeal, act = _open(d, d.seller, "insufficient_payment")
    yield act
    yield _review(d, appeal)
    roll = d.rng.random()
    if roll < 0.5:
        yield _on(d.within(_m(5), _h(2)), "agree_top_up", appeal, d.buyer)
        yield _on(d.within(_m(30), _h(12)), "confirm_top_up", appeal, d.agent)
        yield _resolve(d, appeal, "release")
    elif roll < 0.85:
        yield _on(d.within(_m(5), _h(2)), "refuse_top_up", appeal, d.buyer)
        if d.chance(0.2):  # R2: the refund comes first
            yield _resolve(d, appeal, "cancel", expect="refund_pending")
        fee = min(Decimal(1), (paid / 10).quantize(CENT))
        refund = paid - fee if paid - fee > 0 else paid
        refused = yield from _refund_then_lift(d, appeal, refund, 0.15)
        yield _resolve(d, appeal, "cancel")
        if refused:
            yield _lift(d, d.seller, "p2p_suspension", _d(1), _d(7))
    else:  # the seller accepts the shortfall
        yield _resolve(d, appeal, "release")
    yield Settle()


def non_real_name_payment(d: Deal) -> Iterator[Beat]:
    """C3: the seller accepts (release) or refuses the payment (refund, then cancel)."""
    yield _create(d)
    yield _pay(d)
    appeal, act = _open(d, d.seller, "non_real_name_payment")
    yield act
    yield _review(d, appeal)
    accepts = d.chance(0.5)
    answer = "I accept this payment" if accepts else "I do not accept a third-party payment"
    yield _on(d.within(_m(10), _h(6)), "add_evidence", appeal, d.seller, description=answer)
    if accepts:
        yield _resolve(d, appeal, "release")
        yield Settle()
        return
    if d.chance(0.3):
        yield _resolve(d, appeal, "cancel", expect="refund_pending")
    refused = yield from _refund_then_lift(d, appeal, d.fiat_amount, 0.15)
    yield _resolve(d, appeal, "cancel")
    if refused:
        yield _lift(d, d.seller, "p2p_suspension", _d(1), _d(7))
    yield Settle()


def bank_account_frozen(d: Deal) -> Iterator[Beat]:
    """C4: the buyer is suspended 24 h (S2); proof within 24 h, or the window closes by itself;
    a buyer who does not cooperate is suspended for good (S4), sometimes lifted after review."""
    yield _create(d)
    yield _pay(d)
    appeal, act = _open(d, d.seller, "bank_account_frozen")
    yield act
    if d.chance(0.5):
        yield _on(d.within(_h(1), _h(20)), "submit_freeze_proof", appeal, d.seller, refs=["freeze"])
        if d.chance(0.5):
            yield _on(_h(2), "add_evidence", appeal, d.buyer, description="source of funds")
            yield _resolve(d, appeal, "release")
        else:
            yield Act(
                _d(1),
                "apply_sanction",
                {
                    "trader": d.buyer,
                    "by": d.agent,
                    "kind": "permanent_suspension",
                    "appeal": appeal,
                },
                tolerate=frozenset({"invalid_state"}),
            )
            yield _resolve(d, appeal, "cancel")
            if d.chance(0.3):
                yield _lift(d, d.buyer, "permanent_suspension", _d(7), _d(30))
        yield Settle()
        return
    window = _h(24) + TICK_EVERY * 2
    if d.chance(0.2):
        yield Act(
            window,
            "submit_freeze_proof",
            {"appeal": appeal, "by": d.seller},
            expect="deadline_passed",
            after_deadline=True,
        )
    else:
        yield Act(
            window,
            "add_evidence",
            {"appeal": appeal, "by": d.agent, "description": "no proof within 24 h"},
            after_deadline=True,
        )
    yield _resolve(d, appeal, "release")
    yield Settle()


Story = Callable[[Deal], Iterator[Beat]]
APPEAL_STORIES: tuple[Story, ...] = (
    seller_not_releasing,
    cancelled_after_payment,
    amount_mismatch,
    seller_payment_method_problem,
    buyer_verbal_abuse,
    payment_not_received,
    insufficient_payment,
    non_real_name_payment,
    bank_account_frozen,
    seller_verbal_abuse,
)
# The mix: (story, weight in percent); appealed orders share 33 %.
MIX: tuple[tuple[Story, float], ...] = (
    (completed, 50.0),
    (expired, 8.0),
    (cancelled, 7.0),
    *((story, 3.3) for story in APPEAL_STORIES),
)


def suspended_attempt(d: Deal) -> Iterator[Beat]:
    """O7: a sanctioned trader cannot be party to a new order."""
    d.exists = False
    yield _create(d, expect="trader_suspended")
    yield Settle()


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
    def __init__(self, engine: Escrow, orders: int, seed: int, progress: Progress | None) -> None:
        if not isinstance(engine.clock, ManualClock):
            raise TypeError("simulate needs an engine on a ManualClock (simulated time)")
        if not engine.agents:
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
        self.agents = sorted(engine.agents)
        self.pool = max(10, orders // 8)
        self.blocked: dict[str, datetime | None] = {}  # trader -> until (None: until lifted)
        self.summary = Summary(seed=seed, orders=orders)
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
            agent=self.agents[rng.randrange(len(self.agents))],
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
        started_orders = finished = 0
        while started_orders < self.orders or self.heap:
            if started_orders < self.orders and (not self.heap or arrival <= self.heap[0][0]):
                self._move_to(arrival)
                deal, story = self._deal(started_orders)
                started_orders += 1
                self._push(arrival, deal, story(deal))
                gap = int(self.rng.expovariate(1 / MEAN_ARRIVAL_SECONDS) * 1000)
                arrival += timedelta(milliseconds=gap)
                continue
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
        self.summary.simulated_until = self.clock.now()
        self.summary.seconds = time.perf_counter() - started
        return self.summary

    def _do(self, deal: Deal, act: Act) -> None:
        if act.after_deadline:
            self._tick()
        try:
            outcome = self.engine.run(act.command, act.fields)
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
                }.get(act.command, act.fields.get("kind", "?"))
                summary.sanctions_applied[kind] += 1
            elif r.event == "SanctionLifted":
                summary.sanctions_lifted[act.fields["kind"]] += 1
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
            appeal = self.engine.appeal(ref)
            reason = f"{appeal.rule} {appeal.reason}"
            if appeal.state == "resolved":
                ending = f"resolved: {appeal.outcome}"
            elif appeal.state == "cancelled":
                ending = "withdrawn"
            else:
                ending = appeal.state
            self.summary.appeals[(reason, ending)] += 1


def simulate(
    engine: Escrow, orders: int, seed: int = 1, progress: Progress | None = None
) -> Summary:
    """Run `orders` seeded order stories through `engine` (on a ManualClock, with agents).

    `progress(finished_orders, events_recorded)` is called as each order's story ends. Raises
    SimulationError when the engine answers a step otherwise than the rules require.
    """
    return _Driver(engine, orders, seed, progress).run()


def simulation_engine(store: str = "memory:", start: datetime = START) -> Escrow:
    """An engine ready for `simulate`: the given store, a manual clock, three agents."""
    return Escrow(store, clock=ManualClock(start), agents=AGENTS)
