"""Sanction rules (rules.md S1–S4) and the "Settled details" about sanctions.

Each test plays the rule through the embedding API on memory, SQLite and PostgreSQL and checks
what a user would see: whether the trader may trade (`can_trade`, the active kinds, when each
ends), that a blocked trader cannot take part in a new order (O7) but finishes the ones running,
and for refusals the code of scenarios.md and that nothing was stored. Expiries are deadlines:
they end a sanction at its time even before `tick` records it, never early, and are recorded once.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from escrow.clock import ManualClock
from escrow.commands.api import Escrow
from escrow.policy import Policy
from tests.helpers import event_count, order_fields, paid_order, refused

HOUR, DAY = timedelta(hours=1), timedelta(days=1)
SECOND = timedelta(seconds=1)


def do(engine: Escrow, name: str, **fields: Any) -> None:
    engine.run(name, fields)


def apply(engine: Escrow, trader: str, kind: str, **more: Any) -> None:
    do(engine, "apply_sanction", trader=trader, by="carol", kind=kind, **more)


def blocked(engine: Escrow, trader: str, kinds: set[str]) -> None:
    """The trader has exactly these active kinds, and a new order with them is refused (O7)."""
    view = engine.trader(trader)
    assert (view.can_trade, view.kinds) == (False, kinds)
    refused(
        engine,
        "trader_suspended",
        "create_order",
        **order_fields("probe", seller="zoe", buyer=trader),
    )


def free(engine: Escrow, trader: str) -> None:
    view = engine.trader(trader)
    assert (view.can_trade, view.kinds) == (True, set())


def ends(engine: Escrow, trader: str) -> list[datetime | None]:
    """When each active sanction ends (None: never), earliest first."""
    found = [s.expires_at for s in engine.trader(trader).sanctions]
    return sorted(found, key=lambda t: (t is None, t.timestamp() if t else 0.0))


def recorded(engine: Escrow, name: str, **fields: Any) -> list[tuple[str, str, str | None]]:
    outcome = engine.run(name, fields)
    return [(r.stream, r.event, r.rule) for r in outcome.recorded]


def c4_appeal(engine: Escrow, order: str = "o1", ref: str = "a1", **over: Any) -> None:
    """A paid order whose seller reports a frozen bank account (C4): S2 on the buyer."""
    paid_order(engine, order, **over)
    do(
        engine,
        "open_appeal",
        order=order,
        by=over.get("seller", "alice"),
        reason="bank_account_frozen",
        appeal=ref,
    )


# --- S1: P2P permissions suspended ------------------------------------------------------------


def test_S1_p2p_suspension_blocks_new_orders_until_lifted(
    engine: Escrow, clock: ManualClock
) -> None:
    paid_order(engine)
    do(engine, "open_appeal", order="o1", by="bob", reason="seller_not_releasing", appeal="a1")
    assert ("trader", "Sanctioned", "S1") in recorded(
        engine, "apply_sanction", trader="alice", by="carol", kind="p2p_suspension", appeal="a1"
    )
    view = engine.trader("alice")
    assert [(s.kind, s.appeal, s.since, s.expires_at) for s in view.sanctions] == [
        ("p2p_suspension", "a1", clock.now(), None)
    ]
    blocked(engine, "alice", {"p2p_suspension"})
    clock.advance(400 * DAY)  # S1 never ends by itself
    before = event_count(engine)
    assert engine.tick() == []
    assert event_count(engine) == before
    blocked(engine, "alice", {"p2p_suspension"})
    assert recorded(engine, "lift_sanction", trader="alice", by="dave", kind="p2p_suspension") == [
        ("trader", "SanctionLifted", "S1")
    ]
    free(engine, "alice")
    do(engine, "create_order", **order_fields("o2"))
    assert engine.order("o2").state == "awaiting_payment"


def test_S1_a_seller_who_refuses_a_refund_is_suspended(engine: Escrow) -> None:
    paid_order(engine)
    do(engine, "cancel_order", order="o1", by="bob")
    do(engine, "open_appeal", order="o1", by="bob", reason="cancelled_after_payment", appeal="a1")
    do(engine, "start_review", appeal="a1", by="carol")
    do(engine, "request_refund", appeal="a1", by="carol", amount="460")
    assert ("trader", "Sanctioned", "S1") in recorded(
        engine, "refuse_refund", appeal="a1", by="alice"
    )
    blocked(engine, "alice", {"p2p_suspension"})
    assert engine.trader("alice").sanctions[0].appeal == "a1"
    free(engine, "bob")
    assert engine.appeal("a1").state == "under_review"


def test_S1_only_cs_applies_or_lifts(engine: Escrow) -> None:
    for actor in ("bob", "alice"):
        refused(
            engine,
            "not_authorized",
            "apply_sanction",
            trader="bob",
            by=actor,
            kind="p2p_suspension",
        )
    free(engine, "bob")
    apply(engine, "bob", "p2p_suspension")
    for actor in ("bob", "alice"):
        refused(
            engine, "not_authorized", "lift_sanction", trader="bob", by=actor, kind="p2p_suspension"
        )
    blocked(engine, "bob", {"p2p_suspension"})


# --- S2: 24-hour suspension of trading and withdrawals (C4) -----------------------------------


def test_S2_opening_a_frozen_account_appeal_suspends_the_buyer_for_24h(
    engine: Escrow, clock: ManualClock
) -> None:
    c4_appeal(engine)
    view = engine.trader("bob")
    assert [(s.kind, s.appeal, s.expires_at) for s in view.sanctions] == [
        ("trading_suspension_24h", "a1", clock.now() + 24 * HOUR)
    ]
    blocked(engine, "bob", {"trading_suspension_24h"})
    free(engine, "alice")


def test_S2_expires_by_itself_never_early_and_once(engine: Escrow, clock: ManualClock) -> None:
    c4_appeal(engine)
    do(engine, "submit_freeze_proof", appeal="a1", by="alice")  # only S2 remains due at 24h
    clock.advance(24 * HOUR - SECOND)
    before = event_count(engine)
    assert engine.tick() == []
    assert event_count(engine) == before
    blocked(engine, "bob", {"trading_suspension_24h"})
    clock.advance(SECOND)
    free(engine, "bob")  # over at its time, even before the scheduler records it
    fired = engine.tick()
    assert [(r.stream, r.event, r.actor, r.rule) for o in fired for r in o.recorded] == [
        ("trader", "SanctionExpired", "system", "S2")
    ]
    after = event_count(engine)
    assert engine.tick() == []
    clock.advance(30 * DAY)
    assert engine.tick() == []
    assert event_count(engine) == after
    free(engine, "bob")
    do(engine, "create_order", **order_fields("o2"))


def test_S2_a_suspended_buyer_may_take_a_new_order_at_expiry_before_tick(
    engine: Escrow, clock: ManualClock
) -> None:
    c4_appeal(engine)
    clock.advance(24 * HOUR)
    do(engine, "create_order", **order_fields("o2"))
    assert engine.order("o2").buyer == "bob"


def test_S2_lasts_its_full_duration_whatever_happens_to_the_appeal(
    engine: Escrow, clock: ManualClock
) -> None:
    c4_appeal(engine, "o1", "a1")
    c4_appeal(engine, "o2", "a2", seller="erin", buyer="finn")
    do(engine, "cancel_appeal", appeal="a1", by="alice")  # withdrawn at once
    do(engine, "submit_freeze_proof", appeal="a2", by="erin")
    do(engine, "resolve_appeal", appeal="a2", by="carol", outcome="release")
    assert engine.order("o2").state == "completed"
    clock.advance(23 * HOUR)
    engine.tick()
    blocked(engine, "bob", {"trading_suspension_24h"})
    blocked(engine, "finn", {"trading_suspension_24h"})
    clock.advance(HOUR)
    engine.tick()
    free(engine, "bob")
    free(engine, "finn")


def test_S2_duration_follows_the_policy(
    make_engine: Callable[..., Escrow], clock: ManualClock
) -> None:
    engine = make_engine(Policy(temporary_suspension=timedelta(hours=2)))
    c4_appeal(engine)
    assert ends(engine, "bob") == [clock.now() + 2 * HOUR]
    clock.advance(2 * HOUR - SECOND)
    blocked(engine, "bob", {"trading_suspension_24h"})
    clock.advance(SECOND)
    free(engine, "bob")


def test_S2_cs_may_lift_it_early_and_then_its_expiry_records_nothing(
    engine: Escrow, clock: ManualClock
) -> None:
    c4_appeal(engine)
    do(engine, "submit_freeze_proof", appeal="a1", by="alice")
    do(engine, "lift_sanction", trader="bob", by="carol", kind="trading_suspension_24h")
    free(engine, "bob")
    before = event_count(engine)
    clock.advance(25 * HOUR)
    assert [o for o in engine.tick() if o.recorded] == []
    assert event_count(engine) == before


def test_S2_is_applied_by_the_rules_not_by_hand(engine: Escrow) -> None:
    refused(
        engine,
        "validation_error",
        "apply_sanction",
        trader="bob",
        by="carol",
        kind="trading_suspension_24h",
    )
    free(engine, "bob")


# --- S3: partial bans on a ladder -------------------------------------------------------------


def test_S3_partial_ban_ladder_counts_expired_and_lifted_bans(
    engine: Escrow, clock: ManualClock
) -> None:
    apply(engine, "bob", "partial_ban")  # first offence: 24h
    assert ends(engine, "bob") == [clock.now() + 24 * HOUR]
    clock.advance(24 * HOUR)
    engine.tick()
    free(engine, "bob")
    apply(engine, "bob", "partial_ban")  # second (the first expired): 7d
    assert ends(engine, "bob") == [clock.now() + 7 * DAY]
    do(engine, "lift_sanction", trader="bob", by="carol", kind="partial_ban")
    free(engine, "bob")
    apply(engine, "bob", "partial_ban")  # third (the second lifted): 30d
    assert ends(engine, "bob") == [clock.now() + 30 * DAY]
    clock.advance(30 * DAY)
    engine.tick()
    apply(engine, "bob", "partial_ban")  # fourth and later: the last step repeats
    assert ends(engine, "bob") == [clock.now() + 30 * DAY]
    free(engine, "alice")  # bans are per trader
    apply(engine, "alice", "partial_ban")
    assert ends(engine, "alice") == [clock.now() + 24 * HOUR]


def test_S3_severe_doubles_the_duration(engine: Escrow, clock: ManualClock) -> None:
    apply(engine, "bob", "partial_ban", severity="severe")
    assert ends(engine, "bob") == [clock.now() + 48 * HOUR]
    assert engine.trader("bob").sanctions[0].severity == "severe"
    do(engine, "lift_sanction", trader="bob", by="carol", kind="partial_ban")
    apply(engine, "bob", "partial_ban", severity="severe")
    assert ends(engine, "bob") == [clock.now() + 14 * DAY]
    do(engine, "lift_sanction", trader="bob", by="carol", kind="partial_ban")
    apply(engine, "bob", "partial_ban", severity="normal")
    assert ends(engine, "bob") == [clock.now() + 30 * DAY]


def test_S3_blocks_until_its_end_and_expires_once(engine: Escrow, clock: ManualClock) -> None:
    paid_order(engine)
    do(engine, "open_appeal", order="o1", by="bob", reason="verbal_abuse", appeal="a1")
    do(engine, "start_review", appeal="a1", by="carol")
    apply(engine, "alice", "partial_ban", appeal="a1")
    do(engine, "resolve_appeal", appeal="a1", by="carol")
    assert engine.trader("alice").sanctions[0].appeal == "a1"
    clock.advance(24 * HOUR - SECOND)
    before = event_count(engine)
    assert engine.tick() == []
    assert event_count(engine) == before
    blocked(engine, "alice", {"partial_ban"})
    clock.advance(SECOND)
    free(engine, "alice")
    fired = engine.tick()
    assert [(r.event, r.rule) for o in fired for r in o.recorded] == [("SanctionExpired", "S3")]
    after = event_count(engine)
    assert engine.tick() == []
    assert event_count(engine) == after


def test_S3_expiry_fires_even_when_the_traders_table_lacks_the_trader(
    engine: Escrow, clock: ManualClock
) -> None:
    """`tick` names the trader from the traders read model; without that row it reads the
    trader's stream instead, so no deadline is ever skipped."""
    paid_order(engine)
    do(engine, "open_appeal", order="o1", by="bob", reason="verbal_abuse", appeal="a1")
    do(engine, "start_review", appeal="a1", by="carol")
    apply(engine, "alice", "partial_ban", appeal="a1")
    engine.catch_up()
    with engine.read.transaction() as cur:
        cur.execute("DELETE FROM escrow_traders WHERE trader = 'alice'")
    clock.advance(24 * HOUR)
    fired = engine.tick()
    assert [(r.ref, r.event, r.rule) for o in fired for r in o.recorded] == [
        ("alice", "SanctionExpired", "S3")
    ]
    free(engine, "alice")


def test_S3_ladder_follows_the_policy(
    make_engine: Callable[..., Escrow], clock: ManualClock
) -> None:
    engine = make_engine(Policy(partial_ban_durations=[timedelta(hours=1), timedelta(hours=5)]))
    for expected in (1, 5, 5):
        apply(engine, "bob", "partial_ban")
        assert ends(engine, "bob") == [clock.now() + expected * HOUR]
        do(engine, "lift_sanction", trader="bob", by="carol", kind="partial_ban")


# --- S4: permanent suspension -----------------------------------------------------------------


def test_S4_permanent_suspension_never_expires(engine: Escrow, clock: ManualClock) -> None:
    apply(engine, "bob", "permanent_suspension")
    assert ends(engine, "bob") == [None]
    clock.advance(3650 * DAY)
    before = event_count(engine)
    assert engine.tick() == []
    assert event_count(engine) == before
    blocked(engine, "bob", {"permanent_suspension"})


def test_S4_only_cs_may_lift_it(engine: Escrow) -> None:
    apply(engine, "bob", "permanent_suspension")
    for actor in ("bob", "alice", "system"):
        refused(
            engine,
            "not_authorized",
            "lift_sanction",
            trader="bob",
            by=actor,
            kind="permanent_suspension",
        )
    blocked(engine, "bob", {"permanent_suspension"})
    do(engine, "lift_sanction", trader="bob", by="dave", kind="permanent_suspension")
    free(engine, "bob")


def test_S4_buyer_who_caused_the_freeze_and_does_not_cooperate(
    engine: Escrow, clock: ManualClock
) -> None:
    c4_appeal(engine)
    do(engine, "submit_freeze_proof", appeal="a1", by="alice", refs=["bank-letter-1"])
    assert engine.appeal("a1").state == "under_review"
    apply(engine, "bob", "permanent_suspension", appeal="a1")
    blocked(engine, "bob", {"trading_suspension_24h", "permanent_suspension"})
    clock.advance(24 * HOUR)
    engine.tick()
    blocked(engine, "bob", {"permanent_suspension"})  # S2 ended, S4 stays


# --- Settled details --------------------------------------------------------------------------


def test_sanctions_never_block_finishing_an_existing_order(engine: Escrow) -> None:
    paid_order(engine, "o1")
    do(engine, "create_order", **order_fields("o2"))
    apply(engine, "alice", "permanent_suspension")
    apply(engine, "bob", "p2p_suspension")
    do(engine, "mark_paid", order="o2", by="bob")  # paying goes on
    do(engine, "release", order="o1", by="alice")  # releasing goes on
    do(engine, "open_appeal", order="o2", by="alice", reason="payment_not_received", appeal="a2")
    do(engine, "add_evidence", appeal="a2", by="bob", description="bank transfer sent")
    do(engine, "start_review", appeal="a2", by="carol")
    do(engine, "resolve_appeal", appeal="a2", by="carol", outcome="release")  # resolving too
    assert (engine.order("o1").state, engine.order("o2").state) == ("completed", "completed")
    ledger = engine.ledger("USDT")
    assert (ledger.in_escrow, ledger.released) == (Decimal(0), Decimal(1000))
    blocked(engine, "alice", {"permanent_suspension"})
    blocked(engine, "bob", {"p2p_suspension"})


def test_an_active_suspension_cannot_be_applied_twice(engine: Escrow) -> None:
    for kind in ("p2p_suspension", "permanent_suspension"):
        apply(engine, "bob", kind)
        refused(engine, "invalid_state", "apply_sanction", trader="bob", by="dave", kind=kind)
    blocked(engine, "bob", {"p2p_suspension", "permanent_suspension"})
    do(engine, "lift_sanction", trader="bob", by="carol", kind="p2p_suspension")
    apply(engine, "bob", "p2p_suspension")  # once lifted it may be applied again
    blocked(engine, "bob", {"p2p_suspension", "permanent_suspension"})


def test_a_new_partial_ban_while_one_is_active_starts_now_with_the_next_duration(
    engine: Escrow, clock: ManualClock
) -> None:
    start = clock.now()
    apply(engine, "bob", "partial_ban")
    clock.advance(HOUR)
    apply(engine, "bob", "partial_ban")
    assert ends(engine, "bob") == [start + 24 * HOUR, start + HOUR + 7 * DAY]
    clock.advance(23 * HOUR)
    engine.tick()  # the first one ends; the second still blocks
    blocked(engine, "bob", {"partial_ban"})
    assert ends(engine, "bob") == [start + HOUR + 7 * DAY]


def test_lifting_removes_every_active_sanction_of_that_kind_only(engine: Escrow) -> None:
    apply(engine, "bob", "partial_ban")
    apply(engine, "bob", "partial_ban", severity="severe")
    apply(engine, "bob", "p2p_suspension")
    assert len(engine.trader("bob").sanctions) == 3
    do(engine, "lift_sanction", trader="bob", by="carol", kind="partial_ban")
    blocked(engine, "bob", {"p2p_suspension"})
    assert len(engine.trader("bob").sanctions) == 1


@pytest.mark.parametrize(
    "kind", ["p2p_suspension", "trading_suspension_24h", "partial_ban", "permanent_suspension"]
)
def test_lifting_a_sanction_that_is_not_active_is_invalid_state(engine: Escrow, kind: str) -> None:
    refused(engine, "invalid_state", "lift_sanction", trader="bob", by="carol", kind=kind)
    other = "partial_ban" if kind != "partial_ban" else "p2p_suspension"
    apply(engine, "bob", other)
    refused(engine, "invalid_state", "lift_sanction", trader="bob", by="carol", kind=kind)
    blocked(engine, "bob", {other})


def test_lifting_a_lapsed_ban_is_invalid_state_even_before_tick(
    engine: Escrow, clock: ManualClock
) -> None:
    apply(engine, "bob", "partial_ban")
    clock.advance(24 * HOUR)
    refused(engine, "invalid_state", "lift_sanction", trader="bob", by="carol", kind="partial_ban")


def test_a_sanction_naming_an_unknown_appeal_is_not_found(engine: Escrow) -> None:
    refused(
        engine,
        "not_found",
        "apply_sanction",
        trader="bob",
        by="carol",
        kind="partial_ban",
        appeal="nope",
    )
    # not_found is checked before not_authorized
    refused(
        engine,
        "not_found",
        "apply_sanction",
        trader="bob",
        by="alice",
        kind="partial_ban",
        appeal="nope",
    )
    free(engine, "bob")
