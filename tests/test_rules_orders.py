"""Order lifecycle rules (rules.md O1–O7), one or more tests per rule ID.

Each test plays the rule through the embedding API on memory, SQLite and PostgreSQL and checks
what a user would see: the order's state, where the crypto went (the order's escrow and the
per-asset ledger), and for refusals the code of scenarios.md and that nothing was stored.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from decimal import Decimal
from typing import Any

from escrow.clock import ManualClock
from escrow.commands.api import Escrow
from escrow.policy import Policy
from tests.helpers import event_count, order_fields, paid_order, refused

ZERO = Decimal(0)


def do(engine: Escrow, name: str, **fields: Any) -> None:
    engine.run(name, fields)


def escrow_of(engine: Escrow, ref: str = "o1") -> tuple[Decimal, Decimal, Decimal]:
    e = engine.order(ref).escrow
    return e.locked, e.released, e.returned


def ledger(engine: Escrow, asset: str = "USDT") -> tuple[Decimal, Decimal, Decimal]:
    view = engine.ledger(asset)
    return view.in_escrow, view.released, view.returned


def sanction(engine: Escrow, trader: str, kind: str = "p2p_suspension") -> None:
    do(engine, "apply_sanction", trader=trader, by="carol", kind=kind)


# --- O1: creating an order --------------------------------------------------------------------


def test_O1_create_locks_the_sellers_crypto_awaiting_payment(engine: Escrow) -> None:
    outcome = engine.run("create_order", order_fields("o1", amount="500", price="0.92"))
    view = engine.order("o1")
    assert view.state == "awaiting_payment"
    assert (view.seller, view.buyer, view.asset, view.amount) == (
        "alice",
        "bob",
        "USDT",
        Decimal(500),
    )
    assert escrow_of(engine) == (Decimal(500), ZERO, ZERO)
    assert ledger(engine) == (Decimal(500), ZERO, ZERO)
    assert [(r.event, r.rule, r.actor) for r in outcome.recorded] == [("Created", "O1", "platform")]


def test_O1_ledger_adds_up_over_orders_per_asset(engine: Escrow) -> None:
    do(engine, "create_order", **order_fields("o1", amount="500"))
    do(engine, "create_order", **order_fields("o2", amount="0.25", seller="erin", buyer="finn"))
    do(engine, "create_order", **order_fields("o3", asset="BTC", amount="1.5"))
    assert ledger(engine, "USDT") == (Decimal("500.25"), ZERO, ZERO)
    assert ledger(engine, "BTC") == (Decimal("1.5"), ZERO, ZERO)


def test_O1_fiat_amount_is_exact_with_no_rounding(engine: Escrow) -> None:
    do(
        engine,
        "create_order",
        **order_fields("o1", amount="123.456789012345678", price="0.333333333333333333"),
    )
    # 35 significant digits: more than Decimal's default context would keep
    exact = Decimal(f"{123456789012345678 * 333333333333333333}E-33")
    assert engine.order("o1").fiat_amount == exact
    assert str(exact) == "41.152263004115225958847736995884774"


def test_O1_buyer_and_seller_must_differ(engine: Escrow) -> None:
    refused(engine, "validation_error", "create_order", **order_fields(buyer="alice"))
    assert ledger(engine) == (ZERO, ZERO, ZERO)


def test_O1_a_cs_agent_cannot_be_a_party(engine: Escrow) -> None:
    refused(engine, "not_authorized", "create_order", **order_fields(seller="carol"))
    refused(engine, "not_authorized", "create_order", **order_fields(buyer="dave"))
    refused(engine, "not_authorized", "create_order", **order_fields(buyer="system"))


def test_O1_duplicate_order_id_is_refused_and_the_first_order_is_untouched(
    engine: Escrow,
) -> None:
    do(engine, "create_order", **order_fields("o1"))
    refused(
        engine, "duplicate_id", "create_order", **order_fields("o1", seller="erin", buyer="finn")
    )
    assert (engine.order("o1").seller, engine.order("o1").buyer) == ("alice", "bob")
    assert ledger(engine) == (Decimal(500), ZERO, ZERO)


def test_O1_precedence_validation_then_duplicate_then_agent(engine: Escrow) -> None:
    do(engine, "create_order", **order_fields("o1"))
    # buyer == seller (validation_error) wins over the duplicate id and the agent party
    refused(
        engine,
        "validation_error",
        "create_order",
        **order_fields("o1", seller="carol", buyer="carol"),
    )
    # a duplicate id wins over an agent named as a party (not_authorized)
    refused(engine, "duplicate_id", "create_order", **order_fields("o1", buyer="carol"))


# --- O2: marking paid -------------------------------------------------------------------------


def test_O2_buyer_marks_paid_before_the_deadline(engine: Escrow, clock: ManualClock) -> None:
    do(engine, "create_order", **order_fields("o1"))
    clock.advance(timedelta(minutes=14, seconds=59))
    do(engine, "mark_paid", order="o1", by="bob")
    view = engine.order("o1")
    assert view.state == "paid"
    assert view.paid_amount == view.fiat_amount == Decimal("460.00")
    assert escrow_of(engine) == (Decimal(500), ZERO, ZERO)
    assert ledger(engine) == (Decimal(500), ZERO, ZERO)


def test_O2_paid_amount_records_what_the_buyer_says_was_sent(engine: Escrow) -> None:
    do(engine, "create_order", **order_fields("o1"))
    do(engine, "mark_paid", order="o1", by="bob", paid_amount="470.5")
    assert engine.order("o1").paid_amount == Decimal("470.5")


def test_O2_mark_paid_at_the_deadline_is_refused_before_tick_runs(
    engine: Escrow, clock: ManualClock
) -> None:
    do(engine, "create_order", **order_fields("o1"))
    clock.advance(timedelta(minutes=15))  # at T the window is closed; no tick has run
    refused(engine, "deadline_passed", "mark_paid", order="o1", by="bob")
    assert engine.order("o1").state == "awaiting_payment"


def test_O2_mark_paid_after_the_system_cancelled_is_deadline_passed(
    engine: Escrow, clock: ManualClock
) -> None:
    do(engine, "create_order", **order_fields("o1"))
    clock.advance(timedelta(minutes=20))
    engine.tick()
    refused(engine, "deadline_passed", "mark_paid", order="o1", by="bob")


def test_O2_mark_paid_twice_is_invalid_state(engine: Escrow) -> None:
    paid_order(engine)
    refused(engine, "invalid_state", "mark_paid", order="o1", by="bob")


def test_O2_per_order_payment_window_overrides_the_policy(
    engine: Escrow, clock: ManualClock
) -> None:
    do(engine, "create_order", **order_fields("o1", payment_window="1h"))
    assert engine.order("o1").payment_deadline == clock.now() + timedelta(hours=1)
    clock.advance(timedelta(minutes=59))
    assert engine.tick() == []
    do(engine, "mark_paid", order="o1", by="bob")
    assert engine.order("o1").state == "paid"


def test_O2_policy_payment_window_applies_to_new_orders(
    make_engine: Callable[..., Escrow], clock: ManualClock
) -> None:
    engine = make_engine(Policy(payment_window=timedelta(minutes=30)))
    do(engine, "create_order", **order_fields("o1"))
    clock.advance(timedelta(minutes=20))
    do(engine, "mark_paid", order="o1", by="bob")
    assert engine.order("o1").state == "paid"


# --- O3: the payment deadline -----------------------------------------------------------------


def test_O3_payment_deadline_cancels_unpaid_order(engine: Escrow, clock: ManualClock) -> None:
    do(engine, "create_order", **order_fields("o1"))
    clock.advance(timedelta(minutes=15))
    fired = engine.tick()
    assert [(r.event, r.rule, r.actor) for o in fired for r in o.recorded] == [
        ("Cancelled", "O3", "system")
    ]
    view = engine.order("o1")
    assert (view.state, view.cancel_reason) == ("cancelled", "payment_window_expired")
    assert view.closed_at == clock.now()
    assert escrow_of(engine) == (Decimal(500), ZERO, Decimal(500))
    assert ledger(engine) == (ZERO, ZERO, Decimal(500))


def test_O3_payment_deadline_never_fires_early(engine: Escrow, clock: ManualClock) -> None:
    do(engine, "create_order", **order_fields("o1"))
    before = event_count(engine)
    clock.advance(timedelta(minutes=14, seconds=59))
    assert engine.tick() == []
    assert event_count(engine) == before
    assert engine.order("o1").state == "awaiting_payment"
    assert ledger(engine) == (Decimal(500), ZERO, ZERO)


def test_O3_payment_deadline_fires_exactly_once(engine: Escrow, clock: ManualClock) -> None:
    do(engine, "create_order", **order_fields("o1"))
    clock.advance(timedelta(hours=1))
    assert len(engine.tick()) == 1
    after = event_count(engine)
    assert engine.tick() == []
    clock.advance(timedelta(days=3))
    assert engine.tick() == []
    assert event_count(engine) == after
    assert ledger(engine) == (ZERO, ZERO, Decimal(500))


def test_O3_payment_deadline_does_not_fire_on_a_paid_order(
    engine: Escrow, clock: ManualClock
) -> None:
    paid_order(engine)
    before = event_count(engine)
    clock.advance(timedelta(hours=2))
    assert engine.tick() == []
    assert event_count(engine) == before
    assert engine.order("o1").state == "paid"


def test_O3_payment_deadline_does_not_fire_on_a_cancelled_order(
    engine: Escrow, clock: ManualClock
) -> None:
    do(engine, "create_order", **order_fields("o1"))
    do(engine, "cancel_order", order="o1", by="bob")
    before = event_count(engine)
    clock.advance(timedelta(hours=2))
    assert engine.tick() == []
    assert event_count(engine) == before
    assert engine.order("o1").cancel_reason == "buyer_cancelled"
    assert ledger(engine) == (ZERO, ZERO, Decimal(500))


def test_O3_only_due_orders_are_cancelled(engine: Escrow, clock: ManualClock) -> None:
    do(engine, "create_order", **order_fields("o1"))
    clock.advance(timedelta(minutes=10))
    do(engine, "create_order", **order_fields("o2", seller="erin", buyer="finn"))
    clock.advance(timedelta(minutes=5))
    engine.tick()
    assert engine.order("o1").state == "cancelled"
    assert engine.order("o2").state == "awaiting_payment"
    assert ledger(engine) == (Decimal(500), ZERO, Decimal(500))
    clock.advance(timedelta(minutes=10))
    engine.tick()
    assert engine.order("o2").state == "cancelled"
    assert ledger(engine) == (ZERO, ZERO, Decimal(1000))


# --- O4: buyer cancels ------------------------------------------------------------------------


def test_O4_buyer_cancels_while_awaiting_payment(engine: Escrow) -> None:
    do(engine, "create_order", **order_fields("o1"))
    do(engine, "cancel_order", order="o1", by="bob")
    view = engine.order("o1")
    assert (view.state, view.cancel_reason) == ("cancelled", "buyer_cancelled")
    assert escrow_of(engine) == (Decimal(500), ZERO, Decimal(500))
    assert ledger(engine) == (ZERO, ZERO, Decimal(500))


def test_O4_buyer_cancels_after_marking_paid(engine: Escrow) -> None:
    paid_order(engine)
    do(engine, "cancel_order", order="o1", by="bob")
    assert engine.order("o1").state == "cancelled"
    assert ledger(engine) == (ZERO, ZERO, Decimal(500))


def test_O4_seller_and_agent_may_not_cancel(engine: Escrow) -> None:
    paid_order(engine)
    refused(engine, "not_authorized", "cancel_order", order="o1", by="alice")
    refused(engine, "not_authorized", "cancel_order", order="o1", by="carol")
    assert engine.order("o1").state == "paid"


def test_O4_no_cancel_from_in_appeal_or_a_terminal_state(engine: Escrow) -> None:
    paid_order(engine)
    do(engine, "open_appeal", order="o1", by="bob", reason="seller_not_releasing", appeal="a1")
    refused(engine, "invalid_state", "cancel_order", order="o1", by="bob")
    do(engine, "cancel_appeal", appeal="a1", by="bob")
    do(engine, "release", order="o1", by="alice")
    refused(engine, "invalid_state", "cancel_order", order="o1", by="bob")
    do(engine, "create_order", **order_fields("o2"))
    do(engine, "cancel_order", order="o2", by="bob")
    refused(engine, "invalid_state", "cancel_order", order="o2", by="bob")
    assert ledger(engine) == (ZERO, Decimal(500), Decimal(500))


# --- O5: release ------------------------------------------------------------------------------


def test_O5_seller_releases_a_paid_order_to_the_buyer(engine: Escrow) -> None:
    paid_order(engine)
    outcome = engine.run("release", {"order": "o1", "by": "alice"})
    assert [(r.event, r.rule) for r in outcome.recorded] == [("Released", "O5")]
    view = engine.order("o1")
    assert view.state == "completed"
    assert escrow_of(engine) == (Decimal(500), Decimal(500), ZERO)
    assert ledger(engine) == (ZERO, Decimal(500), ZERO)


def test_O5_no_release_before_payment(engine: Escrow) -> None:
    do(engine, "create_order", **order_fields("o1"))
    refused(engine, "invalid_state", "release", order="o1", by="alice")
    assert ledger(engine) == (Decimal(500), ZERO, ZERO)


def test_O5_terminal_orders_never_move(engine: Escrow) -> None:
    paid_order(engine)
    do(engine, "release", order="o1", by="alice")
    refused(engine, "invalid_state", "release", order="o1", by="alice")
    refused(engine, "invalid_state", "mark_paid", order="o1", by="bob")
    do(engine, "create_order", **order_fields("o2"))
    do(engine, "cancel_order", order="o2", by="bob")
    refused(engine, "invalid_state", "release", order="o2", by="alice")
    refused(engine, "invalid_state", "mark_paid", order="o2", by="bob")
    assert ledger(engine) == (ZERO, Decimal(500), Decimal(500))


# --- O6: who does what ------------------------------------------------------------------------


def test_O6_only_the_buyer_marks_paid(engine: Escrow) -> None:
    do(engine, "create_order", **order_fields("o1"))
    for actor in ("alice", "carol", "mallory"):
        refused(engine, "not_authorized", "mark_paid", order="o1", by=actor)
    assert engine.order("o1").state == "awaiting_payment"


def test_O6_only_the_seller_releases(engine: Escrow) -> None:
    paid_order(engine)
    for actor in ("bob", "carol", "mallory"):
        refused(engine, "not_authorized", "release", order="o1", by=actor)
    assert engine.order("o1").state == "paid"
    assert ledger(engine) == (Decimal(500), ZERO, ZERO)


def test_O6_a_trader_who_is_neither_party_can_do_nothing(engine: Escrow) -> None:
    paid_order(engine)
    for name, fields in [
        ("mark_paid", {}),
        ("cancel_order", {}),
        ("release", {}),
        ("open_appeal", {"reason": "seller_not_releasing", "appeal": "a1"}),
        ("open_appeal", {"reason": "payment_not_received", "appeal": "a1"}),
    ]:
        refused(engine, "not_authorized", name, order="o1", by="mallory", **fields)
    assert engine.order("o1").state == "paid"


def test_O6_not_authorized_wins_over_invalid_state(engine: Escrow) -> None:
    do(engine, "create_order", **order_fields("o1"))
    # the buyer releasing an unpaid order: not his command, whatever the state
    refused(engine, "not_authorized", "release", order="o1", by="bob")
    do(engine, "cancel_order", order="o1", by="bob")
    refused(engine, "not_authorized", "mark_paid", order="o1", by="alice")


def test_O6_the_system_actor_is_reserved(engine: Escrow, clock: ManualClock) -> None:
    do(engine, "create_order", **order_fields("o1"))
    clock.advance(timedelta(minutes=15))
    refused(engine, "not_authorized", "cancel_order", order="o1", by="system")
    refused(engine, "not_authorized", "mark_paid", order="o1", by="system")


# --- O7: sanctioned traders and new orders ----------------------------------------------------


def test_O7_a_suspended_seller_or_buyer_cannot_take_a_new_order(engine: Escrow) -> None:
    sanction(engine, "alice")
    refused(engine, "trader_suspended", "create_order", **order_fields("o1"))
    refused(
        engine,
        "trader_suspended",
        "create_order",
        **order_fields("o1", seller="erin", buyer="alice"),
    )
    assert ledger(engine) == (ZERO, ZERO, ZERO)
    do(engine, "create_order", **order_fields("o2", seller="erin", buyer="finn"))
    assert engine.order("o2").state == "awaiting_payment"


def test_O7_every_blocking_kind_blocks(engine: Escrow) -> None:
    for trader, kind in [
        ("t1", "p2p_suspension"),
        ("t2", "partial_ban"),
        ("t3", "permanent_suspension"),
    ]:
        sanction(engine, trader, kind)
        refused(engine, "trader_suspended", "create_order", **order_fields("o1", buyer=trader))
    # S2, applied when a seller reports a frozen account (C4), blocks the buyer too
    paid_order(engine, "o9", seller="erin", buyer="finn")
    do(engine, "open_appeal", order="o9", by="erin", reason="bank_account_frozen", appeal="a9")
    refused(engine, "trader_suspended", "create_order", **order_fields("o1", buyer="finn"))


def test_O7_trading_again_once_the_sanction_is_lifted(engine: Escrow) -> None:
    sanction(engine, "bob")
    refused(engine, "trader_suspended", "create_order", **order_fields("o1"))
    do(engine, "lift_sanction", trader="bob", by="carol", kind="p2p_suspension")
    do(engine, "create_order", **order_fields("o1"))
    assert engine.order("o1").state == "awaiting_payment"


def test_O7_precedence_duplicate_and_agent_before_trader_suspended(engine: Escrow) -> None:
    do(engine, "create_order", **order_fields("o1"))
    sanction(engine, "alice")
    refused(engine, "duplicate_id", "create_order", **order_fields("o1"))
    refused(engine, "not_authorized", "create_order", **order_fields("o2", buyer="carol"))
    refused(engine, "validation_error", "create_order", **order_fields("o2", buyer="alice"))
