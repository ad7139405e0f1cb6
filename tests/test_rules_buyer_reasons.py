"""Resolution guidelines for the buyer's appeal reasons (rules.md B1, B1a, B2, B3, B4, B5).

Each test plays a guideline end to end through the embedding API, on memory, SQLite and
PostgreSQL, and checks what a user would see: the order and appeal states, where the crypto
went (order escrow and the per-asset ledger), who is sanctioned, and that refused commands
carry their code and store nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from decimal import Decimal

import pytest

from escrow.clock import ManualClock
from escrow.commands.api import Escrow
from escrow.policy import Policy
from tests.helpers import (
    appeal_in_review,
    assert_appeal,
    assert_free,
    assert_ledger,
    assert_order,
    assert_sanctioned,
    do,
    event_count,
    order_fields,
    paid_order,
    refused,
)

# --- small local vocabulary ----------------------------------------------------------------


# --- B1: the seller does not release ------------------------------------------------------


def test_B1_cs_releases_to_the_buyer_after_checking_evidence(engine: Escrow) -> None:
    paid_order(engine)
    do(engine, "open_appeal", order="o1", by="bob", reason="seller_not_releasing", appeal="a1")
    assert_order(engine, "in_appeal", "locked", open_appeal="a1")
    assert_appeal(engine, "open")
    do(engine, "add_evidence", appeal="a1", by="bob", description="bank receipt", refs=["f-1"])
    do(engine, "start_review", appeal="a1", by="carol")

    do(engine, "resolve_appeal", appeal="a1", by="carol", outcome="release")

    assert_appeal(engine, "resolved", outcome="release")
    assert engine.appeal("a1").evidence_count == 1
    assert_order(engine, "completed", "released")
    assert_ledger(engine, in_escrow="0", released="500")
    assert_free(engine, "alice", "bob")
    refused(engine, "invalid_state", "release", order="o1", by="alice")


@pytest.mark.parametrize(("price", "reference"), [("1.11", "1.00"), ("0.89", "1.00")])
def test_B1a_price_deviation_forbids_release(engine: Escrow, price: str, reference: str) -> None:
    """More than 10% away from the reference rate, above or below: no release."""
    appeal_in_review(engine, "seller_not_releasing", price=price, reference_price=reference)

    error = refused(
        engine, "price_deviation", "resolve_appeal", appeal="a1", by="carol", outcome="release"
    )

    assert error.rule == "B1a"
    assert_appeal(engine, "under_review")
    assert_order(engine, "in_appeal", "locked", open_appeal="a1")
    assert_ledger(engine, in_escrow="500")


def test_B1a_price_deviation_cancels_only_after_the_refund_is_confirmed(engine: Escrow) -> None:
    appeal_in_review(engine, "seller_not_releasing", price="1.11", reference_price="1.00")
    # R2: the cancel waits on a confirmed refund even before one was requested.
    refused(engine, "refund_pending", "resolve_appeal", appeal="a1", by="carol", outcome="cancel")

    do(engine, "request_refund", appeal="a1", by="carol", amount="555")
    refused(engine, "refund_pending", "resolve_appeal", appeal="a1", by="carol", outcome="cancel")
    do(engine, "report_refund", appeal="a1", by="alice", amount="555", reference="TX-9")
    refused(engine, "refund_pending", "resolve_appeal", appeal="a1", by="carol", outcome="cancel")
    do(engine, "confirm_refund", appeal="a1", by="carol")
    refused(engine, "price_deviation", "resolve_appeal", appeal="a1", by="carol", outcome="release")

    do(engine, "resolve_appeal", appeal="a1", by="carol", outcome="cancel")

    assert_appeal(engine, "resolved", outcome="cancel", refund_state="confirmed")
    assert_order(engine, "cancelled", "returned")
    assert_ledger(engine, in_escrow="0", returned="500")
    assert_free(engine, "alice", "bob")


def test_B1a_seller_refusing_the_refund_is_suspended_and_the_order_cancelled(
    engine: Escrow,
) -> None:
    appeal_in_review(engine, "seller_not_releasing", price="1.11", reference_price="1.00")
    do(engine, "request_refund", appeal="a1", by="carol", amount="555")

    do(engine, "refuse_refund", appeal="a1", by="alice")

    assert_appeal(engine, "under_review", refund_state="refused")
    assert_sanctioned(engine, "alice", {"p2p_suspension"})
    assert engine.trader("alice").sanctions[0].appeal == "a1"
    assert_free(engine, "bob")
    refused(engine, "trader_suspended", "create_order", **order_fields("o2"))
    # S1 never blocks finishing this order (Settled details): CS cancels as B1a says.
    do(engine, "resolve_appeal", appeal="a1", by="carol", outcome="cancel")
    assert_appeal(engine, "resolved", outcome="cancel", refund_state="refused")
    assert_order(engine, "cancelled", "returned")
    assert_ledger(engine, in_escrow="0", returned="500")


def test_B1a_price_deviation_wins_over_the_appeal_state(engine: Escrow) -> None:
    """scenarios.md precedence: price_deviation is checked before invalid_state."""
    paid_order(engine, price="1.11", reference_price="1.00")
    do(engine, "open_appeal", order="o1", by="bob", reason="seller_not_releasing", appeal="a1")
    refused(engine, "price_deviation", "resolve_appeal", appeal="a1", by="carol", outcome="release")
    do(engine, "start_review", appeal="a1", by="carol")
    do(engine, "request_refund", appeal="a1", by="carol", amount="555")

    refused(engine, "price_deviation", "resolve_appeal", appeal="a1", by="carol", outcome="release")

    assert_appeal(engine, "awaiting_refund", refund_state="requested")
    assert_order(engine, "in_appeal", "locked", open_appeal="a1")


def test_B1a_deviation_of_exactly_the_limit_still_releases(engine: Escrow) -> None:
    """'More than 10%' is a deviation; exactly 10% is not."""
    appeal_in_review(engine, "seller_not_releasing", price="1.10", reference_price="1.00")

    do(engine, "resolve_appeal", appeal="a1", by="carol", outcome="release")

    assert_appeal(engine, "resolved", outcome="release")
    assert_order(engine, "completed", "released")
    assert_ledger(engine, in_escrow="0", released="500")


def test_B1a_limit_is_the_policy_in_force_when_the_order_was_created(
    make_engine: Callable[..., Escrow], store_url: str
) -> None:
    strict = make_engine(policy=Policy(price_deviation_limit=Decimal("0.05")))
    appeal_in_review(strict, "seller_not_releasing", price="1.06", reference_price="1.00")
    refused(strict, "price_deviation", "resolve_appeal", appeal="a1", by="carol", outcome="release")
    if store_url == "memory:":
        return  # a second engine shares only a durable store
    # Another process with the default 10% policy still judges o1 by the terms it was made on.
    lenient = make_engine()
    refused(
        lenient, "price_deviation", "resolve_appeal", appeal="a1", by="carol", outcome="release"
    )
    assert_order(lenient, "in_appeal", "locked", open_appeal="a1")


# --- B2: cancelled after paying -------------------------------------------------------------


def open_b2_on_cancelled_order(engine: Escrow) -> None:
    paid_order(engine)
    do(engine, "cancel_order", order="o1", by="bob")  # by mistake, after paying
    assert_order(engine, "cancelled", "returned")
    do(engine, "open_appeal", order="o1", by="bob", reason="cancelled_after_payment", appeal="a1")
    do(engine, "start_review", appeal="a1", by="carol")


def test_B2_seller_refunds_and_the_order_stays_cancelled(engine: Escrow) -> None:
    open_b2_on_cancelled_order(engine)
    assert_order(engine, "cancelled", "returned", open_appeal="a1")

    do(engine, "request_refund", appeal="a1", by="carol", amount="460")
    assert_appeal(engine, "awaiting_refund", refund_state="requested")
    do(engine, "report_refund", appeal="a1", by="alice", amount="460", reference="TX-1")
    do(engine, "confirm_refund", appeal="a1", by="carol")
    # A2: no outcome may be given for an order that is already terminal.
    refused(engine, "validation_error", "resolve_appeal", appeal="a1", by="carol", outcome="cancel")

    do(engine, "resolve_appeal", appeal="a1", by="carol")

    assert_appeal(engine, "resolved", outcome="none", refund_state="confirmed")
    assert_order(engine, "cancelled", "returned")
    assert_ledger(engine, in_escrow="0", returned="500")
    assert_free(engine, "alice", "bob")


def test_B2_refused_refund_suspends_the_seller(engine: Escrow, clock: ManualClock) -> None:
    open_b2_on_cancelled_order(engine)
    do(engine, "request_refund", appeal="a1", by="carol", amount="460")

    do(engine, "refuse_refund", appeal="a1", by="alice")

    assert_appeal(engine, "under_review", refund_state="refused")
    assert_sanctioned(engine, "alice", {"p2p_suspension"})
    assert_free(engine, "bob")
    refused(engine, "trader_suspended", "create_order", **order_fields("o2"))
    refused(
        engine,
        "trader_suspended",
        "create_order",
        **order_fields("o2", seller="erin", buyer="alice"),
    )

    do(engine, "resolve_appeal", appeal="a1", by="carol")
    assert_appeal(engine, "resolved", outcome="none", refund_state="refused")
    assert_order(engine, "cancelled", "returned")
    assert_ledger(engine, in_escrow="0", returned="500")
    # S1 does not expire with time or with the appeal: only CS lifts it.
    clock.advance(timedelta(days=90))
    engine.tick()
    assert_sanctioned(engine, "alice", {"p2p_suspension"})
    do(engine, "lift_sanction", trader="alice", by="dave", kind="p2p_suspension")
    assert_free(engine, "alice")


def test_B2_payment_button_expired_after_paying(engine: Escrow, clock: ManualClock) -> None:
    """The buyer paid but the window closed first: the system cancelled, the buyer appeals."""
    do(engine, "create_order", **order_fields("o1"))
    clock.advance(timedelta(minutes=15))
    engine.tick()
    assert_order(engine, "cancelled", "returned")
    assert engine.order("o1").cancel_reason == "payment_window_expired"

    do(engine, "open_appeal", order="o1", by="bob", reason="cancelled_after_payment", appeal="a1")
    assert_order(engine, "cancelled", "returned", open_appeal="a1")
    do(engine, "start_review", appeal="a1", by="carol")
    # R3: never marked paid, so the refund is at most the order's fiat amount.
    refused(
        engine, "amount_exceeds_limit", "request_refund", appeal="a1", by="carol", amount="460.01"
    )
    do(engine, "request_refund", appeal="a1", by="carol", amount="460")
    do(engine, "confirm_refund", appeal="a1", by="carol")
    do(engine, "resolve_appeal", appeal="a1", by="carol")

    assert_appeal(engine, "resolved", outcome="none", refund_state="confirmed")
    assert_order(engine, "cancelled", "returned")
    assert_ledger(engine, in_escrow="0", returned="500")


# --- B3: the buyer paid too much ------------------------------------------------------------


def test_B3_partial_refund_capped_at_the_overpayment(engine: Escrow) -> None:
    appeal_in_review(engine, "amount_mismatch", paid_amount="500")  # 460 due: 40 overpaid
    assert engine.order("o1").paid_amount == Decimal("500")

    refused(
        engine, "amount_exceeds_limit", "request_refund", appeal="a1", by="carol", amount="40.01"
    )
    do(engine, "request_refund", appeal="a1", by="carol", amount="25")
    do(engine, "report_refund", appeal="a1", by="alice", amount="25", reference="TX-2")
    do(engine, "confirm_refund", appeal="a1", by="carol")
    # The cap is on the sum: 25 already refunded leaves 15.
    refused(
        engine, "amount_exceeds_limit", "request_refund", appeal="a1", by="carol", amount="15.01"
    )
    do(engine, "request_refund", appeal="a1", by="carol", amount="15")
    do(engine, "confirm_refund", appeal="a1", by="carol")
    refused(
        engine, "amount_exceeds_limit", "request_refund", appeal="a1", by="carol", amount="0.01"
    )

    do(engine, "resolve_appeal", appeal="a1", by="carol", outcome="release")

    view = engine.appeal("a1")
    assert [r.amount for r in view.refunds] == [Decimal(25), Decimal(15)]
    assert_appeal(engine, "resolved", outcome="release", refund_state="confirmed")
    assert_order(engine, "completed", "released")
    assert_ledger(engine, in_escrow="0", released="500")
    assert_free(engine, "alice", "bob")


def test_B3_seller_refusing_the_overpayment_refund_gets_S1(engine: Escrow) -> None:
    appeal_in_review(engine, "amount_mismatch", paid_amount="500")
    do(engine, "request_refund", appeal="a1", by="carol", amount="40")

    do(engine, "refuse_refund", appeal="a1", by="alice")

    assert_appeal(engine, "under_review", refund_state="refused")
    assert_sanctioned(engine, "alice", {"p2p_suspension"})
    assert_free(engine, "bob")
    assert_order(engine, "in_appeal", "locked", open_appeal="a1")
    do(engine, "resolve_appeal", appeal="a1", by="carol", outcome="release")
    assert_order(engine, "completed", "released")
    assert_ledger(engine, in_escrow="0", released="500")


def test_B3_nothing_to_refund_when_nothing_was_overpaid(engine: Escrow) -> None:
    appeal_in_review(engine, "amount_mismatch")  # paid exactly 460

    refused(
        engine, "amount_exceeds_limit", "request_refund", appeal="a1", by="carol", amount="0.01"
    )

    assert_appeal(engine, "under_review")


# --- B4: the seller's payment method -------------------------------------------------------


def test_B4_cs_cancels_after_verification(engine: Escrow) -> None:
    appeal_in_review(engine, "seller_payment_method_problem")
    do(engine, "add_evidence", appeal="a1", by="carol", description="bank confirms account closed")

    do(engine, "resolve_appeal", appeal="a1", by="carol", outcome="cancel")

    assert_appeal(engine, "resolved", outcome="cancel")
    assert_order(engine, "cancelled", "returned")
    assert_ledger(engine, in_escrow="0", returned="500")
    assert_free(engine, "alice", "bob")
    refused(engine, "invalid_state", "release", order="o1", by="alice")


def test_B4_a_refund_requested_must_settle_before_the_cancel(engine: Escrow) -> None:
    appeal_in_review(engine, "seller_payment_method_problem")
    do(engine, "request_refund", appeal="a1", by="carol", amount="460")

    refused(engine, "refund_pending", "resolve_appeal", appeal="a1", by="carol", outcome="cancel")
    do(engine, "confirm_refund", appeal="a1", by="carol")
    do(engine, "resolve_appeal", appeal="a1", by="carol", outcome="cancel")

    assert_appeal(engine, "resolved", outcome="cancel", refund_state="confirmed")
    assert_order(engine, "cancelled", "returned")
    assert_ledger(engine, in_escrow="0", returned="500")


# --- B5: verbal abuse ----------------------------------------------------------------------


def test_B5_verbal_abuse_partial_ban_and_no_outcome_returns_order_to_paid(engine: Escrow) -> None:
    appeal_in_review(engine, "verbal_abuse")
    assert_order(engine, "in_appeal", "locked", open_appeal="a1")

    do(engine, "apply_sanction", trader="alice", by="carol", kind="partial_ban", appeal="a1")
    do(engine, "resolve_appeal", appeal="a1", by="carol")

    assert_appeal(engine, "resolved", outcome="none")
    assert_order(engine, "paid", "locked")
    assert_ledger(engine, in_escrow="500")
    assert_sanctioned(engine, "alice", {"partial_ban"})
    assert engine.trader("alice").sanctions[0].appeal == "a1"
    assert_free(engine, "bob")
    # The ban blocks new orders, not finishing this one.
    refused(engine, "trader_suspended", "create_order", **order_fields("o2"))
    do(engine, "release", order="o1", by="alice")
    assert_order(engine, "completed", "released")
    assert_ledger(engine, in_escrow="0", released="500")


def test_B5_issue_is_per_trader(engine: Escrow) -> None:
    """A3: bob's verbal-abuse issue is closed for bob; alice keeps her own."""
    appeal_in_review(engine, "verbal_abuse")
    do(engine, "resolve_appeal", appeal="a1", by="carol")

    refused(
        engine,
        "issue_already_resolved",
        "open_appeal",
        order="o1",
        by="bob",
        reason="verbal_abuse",
        appeal="a2",
    )
    do(engine, "open_appeal", order="o1", by="alice", reason="verbal_abuse", appeal="a2")

    assert_order(engine, "in_appeal", "locked", open_appeal="a2")
    assert_appeal(engine, "open", ref="a2")
    assert engine.appeal("a2").opener == "alice"


def test_B5_severity_sets_the_length_of_the_partial_ban(engine: Escrow, clock: ManualClock) -> None:
    appeal_in_review(engine, "verbal_abuse")
    do(
        engine,
        "apply_sanction",
        trader="alice",
        by="carol",
        kind="partial_ban",
        severity="severe",
        appeal="a1",
    )
    do(engine, "resolve_appeal", appeal="a1", by="carol")
    ban = engine.trader("alice").sanctions[0]
    assert ban.expires_at == ban.since + timedelta(hours=48)  # first offence 24h, severe doubles

    clock.advance(timedelta(hours=47, minutes=59))
    engine.tick()
    assert_sanctioned(engine, "alice", {"partial_ban"})
    clock.advance(timedelta(minutes=1))
    before = event_count(engine)
    engine.tick()
    assert event_count(engine) == before + 1  # the expiry is recorded, once
    assert_free(engine, "alice")
    do(engine, "create_order", **order_fields("o2"))
    assert_order(engine, "awaiting_payment", "locked", ref="o2")
