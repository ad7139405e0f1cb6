"""A fast way to fill a store with realistic history, for the projection benchmark and the
kill-and-resume test: the engine's own aggregates decide and record every event (same rules,
same hash chain, same topics as commands produce), and `app.save` stores them in batches.

Commands through `Escrow.execute` load each aggregate, check the rules and commit one
transaction per command (about a thousand per second); here a *wave* of orders is kept in
memory and each step of their stories is saved for the whole wave at once: one transaction per
step and wave, a few hundred events each. Stories interleave within a wave like concurrent
trades do in the log. The in-process read models are not touched: the events are left for a
projector to catch up on, as events written by another process would be.

Mix of stories (weights): completed 60, buyer cancels 8, payment window expires 7, paid then
cancelled 3, seller_not_releasing appeal resolved release or cancel 8, payment_not_received
with proof requested then submitted or expired 6, bank_account_frozen with its S2 sanction and
freeze proof or window closing 3, insufficient_payment with top-up 3, verbal abuse after
completion with a partial ban 2, appeal withdrawn 2, non_real_name_payment with a refund 2;
S2/S3 sanctions that lapse are expired by the system later on.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from eventsourcing.application import Application

from escrow.actors import SYSTEM_ACTOR, Actor
from escrow.appeal import Appeal
from escrow.order import Order
from escrow.policy import Policy
from escrow.recording import EscrowAggregate
from escrow.trader import Trader
from escrow.vocabulary import Reason, Role, SanctionKind

START = datetime(2026, 1, 1, tzinfo=UTC)
AGENTS = tuple(Actor(f"agent{i}", role=Role.AGENT) for i in range(1, 6))
Step = list[EscrowAggregate]  # what one step of a story changed
Story = Callable[["_Deal"], Iterator[Step]]


@dataclass
class _Deal:
    n: int
    prefix: str
    at: datetime
    rng: random.Random
    policy: Policy
    seller: Actor
    buyer: Actor
    traders: dict[str, Trader]
    order: Any = None
    appeal: Any = None
    extra: list[EscrowAggregate] = field(default_factory=list)

    def later(self, low: float, high: float) -> datetime:
        """Move this deal's time on by low..high minutes."""
        self.at += timedelta(seconds=self.rng.uniform(low * 60, high * 60))
        return self.at

    def agent(self) -> Actor:
        return AGENTS[self.n % len(AGENTS)]

    def trader(self, name: str) -> Trader:
        """The trader's stream, started on the first sanction (as the engine does)."""
        found = self.traders.get(name)
        if found is None:
            found = self.traders[name] = Trader.register(name, self.at)
        return found


def _create(d: _Deal) -> Step:
    instant = d.rng.random() < 0.5
    price = Decimal(d.rng.randint(88, 99)) / 100
    d.order = Order.create(
        ref=f"{d.prefix}o{d.n}",
        seller=d.seller.name,
        buyer=d.buyer.name,
        asset="USDT" if d.rng.random() < 0.8 else "BTC",
        amount=Decimal(d.rng.randint(1_000, 500_000)) / 100,
        price=price,
        fiat="EUR",
        payment_method="sepa_instant" if instant else "bank_transfer",
        instant=instant,
        reference_price=price,
        payment_window=d.policy.payment_window,
        policy=d.policy,
        at=d.at,
    )
    return [d.order]


def _pay(d: _Deal) -> Step:
    d.order.mark_paid(d.buyer, None, d.later(1, 12))
    return [d.order]


def _open(d: _Deal, by: Actor, reason: str) -> Step:
    at = d.later(5, 60)
    d.appeal = Appeal.open(
        ref=f"{d.prefix}a{d.n}",
        order=d.order,
        by=by,
        reason=reason,
        description=None,
        policy=d.policy,
        at=at,
    )
    d.order.appeal_opened(d.appeal.ref, by, d.appeal.issue, d.appeal.reason, at)
    return [d.appeal, d.order]


def _review(d: _Deal) -> Step:
    d.appeal.start_review(d.agent(), d.order, d.later(10, 240))
    return [d.appeal]


def _resolve(d: _Deal, outcome: str | None) -> Step:
    at = d.later(10, 600)
    final = d.appeal.resolve(d.agent(), outcome, d.order, at)
    d.order.appeal_resolved(d.appeal.ref, d.appeal.issue, final, d.agent(), at)
    return [d.appeal, d.order]


def completed(d: _Deal) -> Iterator[Step]:
    yield _create(d)
    yield _pay(d)
    d.order.release(d.seller, d.later(1, 30))
    yield [d.order]


def buyer_cancels(d: _Deal) -> Iterator[Step]:
    yield _create(d)
    d.order.cancel(d.buyer, d.later(1, 10))
    yield [d.order]


def expires(d: _Deal) -> Iterator[Step]:
    yield _create(d)
    d.at = d.order.payment_deadline + timedelta(seconds=d.rng.uniform(0, 60))
    d.order.expire(SYSTEM_ACTOR, d.at)
    yield [d.order]


def paid_then_cancelled(d: _Deal) -> Iterator[Step]:
    yield _create(d)
    yield _pay(d)
    d.order.cancel(d.buyer, d.later(5, 60))
    yield [d.order]


def seller_not_releasing(d: _Deal) -> Iterator[Step]:
    yield _create(d)
    yield _pay(d)
    yield _open(d, d.buyer, Reason.SELLER_NOT_RELEASING)
    yield _review(d)
    d.appeal.add_evidence(d.buyer, "bank statement", ["stmt.pdf"], d.order, d.later(5, 60))
    yield [d.appeal]
    yield _resolve(d, "release" if d.rng.random() < 0.7 else "cancel")


def payment_not_received(d: _Deal) -> Iterator[Step]:
    yield _create(d)
    yield _pay(d)
    yield _open(d, d.seller, Reason.PAYMENT_NOT_RECEIVED)
    yield _review(d)
    if d.order.instant:
        yield _resolve(d, "cancel" if d.rng.random() < 0.5 else "release")
        return
    d.appeal.request_payment_proof(d.agent(), d.order, d.policy, d.later(5, 60))
    yield [d.appeal]
    if d.rng.random() < 0.6:
        d.appeal.submit_payment_proof(d.buyer, ["receipt.png"], d.order, d.later(60, 2000))
        yield [d.appeal]
        yield _resolve(d, "release")
        return
    d.at = d.appeal.proof_deadline
    outcome = d.appeal.expire_payment_proof(SYSTEM_ACTOR, d.order, d.at)
    d.order.appeal_resolved(d.appeal.ref, d.appeal.issue, outcome, SYSTEM_ACTOR, d.at)
    yield [d.appeal, d.order]


def bank_account_frozen(d: _Deal) -> Iterator[Step]:
    yield _create(d)
    yield _pay(d)
    step = _open(d, d.seller, Reason.BANK_ACCOUNT_FROZEN)
    buyer = d.trader(d.buyer.name)
    buyer.sanction(
        SanctionKind.TRADING_SUSPENSION_24H,
        by=d.seller,
        at=d.at,
        policy=d.policy,
        rule="C4",
        appeal=d.appeal.ref,
    )
    yield [*step, buyer]
    if d.rng.random() < 0.5:
        d.appeal.submit_freeze_proof(d.seller, ["freeze.pdf"], d.order, d.later(30, 600))
    else:
        d.at = d.appeal.freeze_deadline
        d.appeal.close_freeze_window(SYSTEM_ACTOR, d.order, d.at)
    yield [d.appeal]
    yield _resolve(d, "release")


def insufficient_payment(d: _Deal) -> Iterator[Step]:
    yield _create(d)
    d.order.mark_paid(d.buyer, d.order.fiat_amount / 2, d.later(1, 12))
    yield [d.order]
    yield _open(d, d.seller, Reason.INSUFFICIENT_PAYMENT)
    yield _review(d)
    d.appeal.agree_top_up(d.buyer, d.order, d.later(5, 60))
    yield [d.appeal]
    at = d.later(10, 300)
    amount = d.appeal.confirm_top_up(d.agent(), None, d.order, at)
    d.order.top_up_confirmed(d.appeal.ref, amount, d.agent(), at)
    yield [d.appeal, d.order]
    yield _resolve(d, "release")


def verbal_abuse(d: _Deal) -> Iterator[Step]:
    yield from completed(d)
    yield _open(d, d.buyer, Reason.VERBAL_ABUSE)
    yield _review(d)
    seller = d.trader(d.seller.name)
    seller.sanction(
        SanctionKind.PARTIAL_BAN,
        by=d.agent(),
        at=d.later(5, 60),
        policy=d.policy,
        appeal=d.appeal.ref,
    )
    yield [seller]
    yield _resolve(d, None)


def withdrawn(d: _Deal) -> Iterator[Step]:
    yield _create(d)
    yield _pay(d)
    yield _open(d, d.buyer, Reason.SELLER_NOT_RELEASING)
    d.appeal.cancel(d.buyer, d.order, d.later(5, 60))
    d.order.appeal_cancelled(d.appeal.ref, d.buyer, d.at)
    yield [d.appeal, d.order]
    d.order.release(d.seller, d.later(1, 30))
    yield [d.order]


def refunded(d: _Deal) -> Iterator[Step]:
    yield _create(d)
    yield _pay(d)
    yield _open(d, d.seller, Reason.NON_REAL_NAME_PAYMENT)
    yield _review(d)
    amount = d.order.fiat_amount
    d.appeal.request_refund(d.agent(), amount, None, d.order, Decimal(0), d.later(5, 60))
    yield [d.appeal]
    d.appeal.report_refund(d.seller, amount, "tx-1", d.order, d.later(30, 600))
    yield [d.appeal]
    d.appeal.confirm_refund(d.agent(), d.order, d.later(10, 120))
    yield [d.appeal]
    yield _resolve(d, "cancel")


MIX: tuple[tuple[Story, int], ...] = (
    (completed, 60),
    (buyer_cancels, 8),
    (expires, 7),
    (paid_then_cancelled, 3),
    (seller_not_releasing, 8),
    (payment_not_received, 6),
    (bank_account_frozen, 3),
    (insufficient_payment, 3),
    (verbal_abuse, 2),
    (withdrawn, 2),
    (refunded, 2),
)


def fill(
    app: Application[Any],
    events: int,
    *,
    seed: int = 1,
    wave: int = 250,
    start: datetime = START,
    policy: Policy | None = None,
    prefix: str = "b",
    progress: Callable[[int], None] | None = None,
) -> int:
    """Record at least `events` events (whole stories) through `app.save`; returns how many.

    Order refs are `<prefix>o<n>`, appeal refs `<prefix>a<n>`, traders `<prefix>t<n>`: fill a
    store once per prefix."""
    policy = policy or Policy()
    rng = random.Random(seed)
    stories, weights = zip(*MIX, strict=True)
    pool = max(20, events // 150)
    names = [f"{prefix}t{i}" for i in range(pool)]
    traders: dict[str, Trader] = {}
    recorded = 0
    n = 0
    at = start
    while recorded < events:
        deals: list[Iterator[Step]] = []
        for _ in range(wave):
            seller, buyer = rng.sample(names, 2)
            deal = _Deal(
                n=n,
                prefix=prefix,
                at=at,
                rng=random.Random(f"{seed}:{n}"),
                policy=policy,
                seller=Actor(seller),
                buyer=Actor(buyer),
                traders=traders,
            )
            story = rng.choices(stories, weights)[0]
            deals.append(story(deal))
            n += 1
            at += timedelta(seconds=rng.expovariate(1 / 20))
        while deals:
            changed: dict[int, EscrowAggregate] = {}
            alive = []
            for steps in deals:
                step = next(steps, None)
                if step is None:
                    continue
                alive.append(steps)
                for aggregate in step:
                    changed[id(aggregate)] = aggregate
            deals = alive
            recorded += _save(app, list(changed.values()))
        recorded += _save(app, _expire_sanctions(traders, at))
        if progress is not None:
            progress(recorded)
    return recorded


def _expire_sanctions(traders: dict[str, Trader], at: datetime) -> list[EscrowAggregate]:
    lapsed: list[EscrowAggregate] = []
    for trader in traders.values():
        if trader.expire_due(SYSTEM_ACTOR, at):
            lapsed.append(trader)
    return lapsed


def _save(app: Application[Any], aggregates: list[EscrowAggregate]) -> int:
    if not aggregates:
        return 0
    pending = sum(len(a.pending_events) for a in aggregates)
    app.save(*aggregates)
    return pending
