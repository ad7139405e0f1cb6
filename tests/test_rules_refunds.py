"""Refunds and the appeal flow (rules.md R1–R7 and the refund parts of "Settled details").

A refund is fiat paid back off-platform, so the engine only records it; these tests check the
appeal states it moves through, the limits on amounts, who may do what, the deadlines of R5
and R7, and that refusals carry their code and store nothing. Every test runs on memory, SQLite
and PostgreSQL.
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


# --- R1: request, report, confirm or refuse -------------------------------------------------


def test_R1_request_report_confirm(engine: Escrow) -> None:
    appeal_in_review(engine)

    do(engine, "request_refund", appeal="a1", by="carol", amount="460", note="full refund")
    assert_appeal(engine, "awaiting_refund", refund_state="requested")
    do(engine, "report_refund", appeal="a1", by="alice", amount="450", reference="TX-5")
    assert_appeal(engine, "awaiting_refund", refund_state="reported")
    refund = engine.appeal("a1").refunds[-1]
    # A different amount than requested is recorded as reported, not rejected.
    assert (refund.amount, refund.reported, refund.reference, refund.note) == (
        Decimal("460"),
        Decimal("450"),
        "TX-5",
        "full refund",
    )
    do(engine, "confirm_refund", appeal="a1", by="carol")

    assert_appeal(engine, "under_review", refund_state="confirmed")
    assert_order(engine, "in_appeal", "locked", open_appeal="a1")
    assert_ledger(engine, in_escrow="500")  # fiat refunds never move the crypto
    assert_free(engine, "alice", "bob")


def test_R1_refusal_suspends_the_seller(engine: Escrow) -> None:
    appeal_in_review(engine)
    do(engine, "request_refund", appeal="a1", by="carol", amount="100")

    do(engine, "refuse_refund", appeal="a1", by="alice")

    assert_appeal(engine, "under_review", refund_state="refused")
    assert_sanctioned(engine, "alice", {"p2p_suspension"})
    assert engine.trader("alice").sanctions[0].appeal == "a1"
    assert_free(engine, "bob")
    assert_order(engine, "in_appeal", "locked", open_appeal="a1")


def test_R1_refusing_after_reporting_still_suspends(engine: Escrow) -> None:
    appeal_in_review(engine)
    do(engine, "request_refund", appeal="a1", by="carol", amount="100")
    do(engine, "report_refund", appeal="a1", by="alice", amount="50")

    do(engine, "refuse_refund", appeal="a1", by="alice")

    assert_appeal(engine, "under_review", refund_state="refused")
    assert_sanctioned(engine, "alice", {"p2p_suspension"})


def test_R1_second_refusal_keeps_a_single_S1(engine: Escrow) -> None:
    appeal_in_review(engine)
    for _ in range(2):
        do(engine, "request_refund", appeal="a1", by="carol", amount="100")
        do(engine, "refuse_refund", appeal="a1", by="alice")

    sanctions = engine.trader("alice").sanctions
    assert [s.kind for s in sanctions] == ["p2p_suspension"]
    assert [r.state for r in engine.appeal("a1").refunds] == ["refused", "refused"]


def test_R1_each_step_belongs_to_its_actor(engine: Escrow) -> None:
    appeal_in_review(engine)
    refused(engine, "not_authorized", "request_refund", appeal="a1", by="alice", amount="10")
    refused(engine, "not_authorized", "request_refund", appeal="a1", by="bob", amount="10")
    do(engine, "request_refund", appeal="a1", by="carol", amount="10")

    refused(engine, "not_authorized", "report_refund", appeal="a1", by="bob", amount="10")
    refused(engine, "not_authorized", "report_refund", appeal="a1", by="carol", amount="10")
    refused(engine, "not_authorized", "confirm_refund", appeal="a1", by="alice")
    refused(engine, "not_authorized", "confirm_refund", appeal="a1", by="bob")
    refused(engine, "not_authorized", "refuse_refund", appeal="a1", by="bob")
    refused(engine, "not_authorized", "refuse_refund", appeal="a1", by="carol")
    refused(engine, "not_authorized", "refuse_refund", appeal="a1", by="mallory")

    assert_appeal(engine, "awaiting_refund", refund_state="requested")
    assert_free(engine, "alice", "bob")


def test_R1_no_refund_step_without_a_request(engine: Escrow) -> None:
    appeal_in_review(engine)

    refused(engine, "invalid_state", "report_refund", appeal="a1", by="alice", amount="10")
    refused(engine, "invalid_state", "confirm_refund", appeal="a1", by="carol")
    refused(engine, "invalid_state", "refuse_refund", appeal="a1", by="alice")

    assert_appeal(engine, "under_review")
    assert_free(engine, "alice")


# --- R2: a cancel waits on the refund --------------------------------------------------------


def test_R2_cancel_refused_while_a_requested_refund_is_unsettled(engine: Escrow) -> None:
    appeal_in_review(engine, "seller_payment_method_problem")
    do(engine, "request_refund", appeal="a1", by="carol", amount="460")

    refused(engine, "refund_pending", "resolve_appeal", appeal="a1", by="carol", outcome="cancel")
    do(engine, "report_refund", appeal="a1", by="alice", amount="460")
    refused(engine, "refund_pending", "resolve_appeal", appeal="a1", by="carol", outcome="cancel")
    assert_appeal(engine, "awaiting_refund", refund_state="reported")
    do(engine, "confirm_refund", appeal="a1", by="carol")

    do(engine, "resolve_appeal", appeal="a1", by="carol", outcome="cancel")
    assert_appeal(engine, "resolved", outcome="cancel", refund_state="confirmed")
    assert_order(engine, "cancelled", "returned")
    assert_ledger(engine, in_escrow="0", returned="500")


def reach_c2_refused_top_up(engine: Escrow) -> None:
    appeal_in_review(engine, "insufficient_payment", by="alice", paid_amount="400")
    do(engine, "refuse_top_up", appeal="a1", by="bob")


def reach_b1a(engine: Escrow) -> None:
    appeal_in_review(engine, price="1.11", reference_price="1.00")


def reach_c3(engine: Escrow) -> None:
    appeal_in_review(engine, "non_real_name_payment", by="alice")


REQUIRED_REFUND_CASES: dict[str, Callable[[Escrow], None]] = {
    "B1a": reach_b1a,
    "C3": reach_c3,
    "C2_refused_top_up": reach_c2_refused_top_up,
}


@pytest.mark.parametrize("case", sorted(REQUIRED_REFUND_CASES))
def test_R2_cancel_needs_a_settled_refund_even_if_none_was_requested(
    engine: Escrow, case: str
) -> None:
    REQUIRED_REFUND_CASES[case](engine)

    error = refused(
        engine, "refund_pending", "resolve_appeal", appeal="a1", by="carol", outcome="cancel"
    )

    assert error.rule == "R2"
    assert_appeal(engine, "under_review")
    assert_order(engine, "in_appeal", "locked", open_appeal="a1")


@pytest.mark.parametrize("case", sorted(REQUIRED_REFUND_CASES))
@pytest.mark.parametrize("settle", ["confirm_refund", "refuse_refund"])
def test_R2_confirmed_or_refused_refund_allows_the_cancel(
    engine: Escrow, case: str, settle: str
) -> None:
    REQUIRED_REFUND_CASES[case](engine)
    do(engine, "request_refund", appeal="a1", by="carol", amount="100")
    do(engine, settle, appeal="a1", by="carol" if settle == "confirm_refund" else "alice")

    do(engine, "resolve_appeal", appeal="a1", by="carol", outcome="cancel")

    settled = "confirmed" if settle == "confirm_refund" else "refused"
    assert_appeal(engine, "resolved", outcome="cancel", refund_state=settled)
    assert_order(engine, "cancelled", "returned")
    assert_ledger(engine, in_escrow="0", returned="500")
    if settle == "refuse_refund":
        assert_sanctioned(engine, "alice", {"p2p_suspension"})
    else:
        assert_free(engine, "alice")


def test_R2_no_refund_needed_for_a_cancel_in_other_cases(engine: Escrow) -> None:
    """C2 before any refusal of the top-up: the guideline asks for no refund."""
    appeal_in_review(engine, "insufficient_payment", by="alice", paid_amount="400")

    do(engine, "resolve_appeal", appeal="a1", by="carol", outcome="cancel")

    assert_appeal(engine, "resolved", outcome="cancel")
    assert_order(engine, "cancelled", "returned")


def test_R2_release_is_not_held_by_the_refund_rule(engine: Escrow) -> None:
    """C3 accepted by the seller: no refund before a release."""
    reach_c3(engine)

    do(engine, "resolve_appeal", appeal="a1", by="carol", outcome="release")

    assert_appeal(engine, "resolved", outcome="release")
    assert_order(engine, "completed", "released")


# --- R3: how much may be refunded ------------------------------------------------------------


def test_R3_refund_never_exceeds_what_the_buyer_paid(engine: Escrow) -> None:
    appeal_in_review(engine)  # 460 paid

    refused(
        engine, "amount_exceeds_limit", "request_refund", appeal="a1", by="carol", amount="460.01"
    )
    do(engine, "request_refund", appeal="a1", by="carol", amount="460")

    assert_appeal(engine, "awaiting_refund", refund_state="requested")


def test_R3_paid_amount_above_the_order_amount_is_the_limit(engine: Escrow) -> None:
    appeal_in_review(engine, paid_amount="470")

    refused(
        engine, "amount_exceeds_limit", "request_refund", appeal="a1", by="carol", amount="470.01"
    )
    do(engine, "request_refund", appeal="a1", by="carol", amount="470")

    assert_appeal(engine, "awaiting_refund", refund_state="requested")


def test_R3_refund_never_exceeds_overpayment(engine: Escrow) -> None:
    appeal_in_review(engine, "amount_mismatch", paid_amount="460.50")

    error = refused(
        engine, "amount_exceeds_limit", "request_refund", appeal="a1", by="carol", amount="0.51"
    )
    assert error.rule == "R3"
    do(engine, "request_refund", appeal="a1", by="carol", amount="0.50")

    assert_appeal(engine, "awaiting_refund", refund_state="requested")


def test_R3_limit_wins_over_the_appeal_state(engine: Escrow) -> None:
    """scenarios.md precedence: amount_exceeds_limit is checked before invalid_state."""
    paid_order(engine)
    do(engine, "open_appeal", order="o1", by="bob", reason="seller_not_releasing", appeal="a1")
    refused(engine, "amount_exceeds_limit", "request_refund", appeal="a1", by="carol", amount="461")
    refused(engine, "invalid_state", "request_refund", appeal="a1", by="carol", amount="460")
    do(engine, "start_review", appeal="a1", by="carol")
    do(engine, "request_refund", appeal="a1", by="carol", amount="400")

    refused(engine, "amount_exceeds_limit", "request_refund", appeal="a1", by="carol", amount="61")
    refused(engine, "invalid_state", "request_refund", appeal="a1", by="carol", amount="60")
    assert_appeal(engine, "awaiting_refund", refund_state="requested")


def test_R3_never_marked_paid_limits_to_the_fiat_amount(engine: Escrow, clock: ManualClock) -> None:
    do(engine, "create_order", **order_fields("o1", amount="3", price="0.333"))  # 0.999 EUR
    do(engine, "cancel_order", order="o1", by="bob")
    do(engine, "open_appeal", order="o1", by="bob", reason="cancelled_after_payment", appeal="a1")
    do(engine, "start_review", appeal="a1", by="carol")

    refused(engine, "amount_exceeds_limit", "request_refund", appeal="a1", by="carol", amount="1")
    do(engine, "request_refund", appeal="a1", by="carol", amount="0.999")
    assert_appeal(engine, "awaiting_refund", refund_state="requested")
    assert_order(engine, "cancelled", "returned", open_appeal="a1")


def test_R3_C2_refund_at_most_what_was_received(engine: Escrow) -> None:
    reach_c2_refused_top_up(engine)  # 400 received of 460

    refused(engine, "amount_exceeds_limit", "request_refund", appeal="a1", by="carol", amount="460")
    refused(
        engine, "amount_exceeds_limit", "request_refund", appeal="a1", by="carol", amount="400.01"
    )
    do(engine, "request_refund", appeal="a1", by="carol", amount="400")
    assert_appeal(engine, "awaiting_refund", refund_state="requested")


def test_R3_limit_covers_the_sum_across_the_orders_appeals(engine: Escrow) -> None:
    """Settled details: refunds of every appeal on the order count, refused ones excluded."""
    appeal_in_review(engine, "verbal_abuse")
    do(engine, "request_refund", appeal="a1", by="carol", amount="100")
    do(engine, "refuse_refund", appeal="a1", by="alice")  # excluded from the sum
    do(engine, "request_refund", appeal="a1", by="carol", amount="300")
    do(engine, "confirm_refund", appeal="a1", by="carol")
    do(engine, "resolve_appeal", appeal="a1", by="carol")
    assert_order(engine, "paid", "locked")

    do(engine, "open_appeal", order="o1", by="bob", reason="seller_not_releasing", appeal="a2")
    do(engine, "start_review", appeal="a2", by="carol")
    refused(
        engine, "amount_exceeds_limit", "request_refund", appeal="a2", by="carol", amount="160.01"
    )
    do(engine, "request_refund", appeal="a2", by="carol", amount="160")
    do(engine, "confirm_refund", appeal="a2", by="carol")
    refused(
        engine, "amount_exceeds_limit", "request_refund", appeal="a2", by="carol", amount="0.01"
    )
    assert_appeal(engine, "under_review", refund_state="confirmed", ref="a2")


def test_R3_overpayment_cap_counts_refunds_from_earlier_appeals(engine: Escrow) -> None:
    appeal_in_review(engine, "verbal_abuse", paid_amount="500")  # 40 overpaid
    do(engine, "request_refund", appeal="a1", by="carol", amount="30")
    do(engine, "confirm_refund", appeal="a1", by="carol")
    do(engine, "resolve_appeal", appeal="a1", by="carol")

    do(engine, "open_appeal", order="o1", by="bob", reason="amount_mismatch", appeal="a2")
    do(engine, "start_review", appeal="a2", by="carol")
    refused(
        engine, "amount_exceeds_limit", "request_refund", appeal="a2", by="carol", amount="10.01"
    )
    do(engine, "request_refund", appeal="a2", by="carol", amount="10")
    assert_appeal(engine, "awaiting_refund", refund_state="requested", ref="a2")


# --- R4: review first; resolve from review only -----------------------------------------------


def test_R4_cs_takes_the_appeal_into_review_before_anything_else(engine: Escrow) -> None:
    paid_order(engine, instant=False)
    do(engine, "open_appeal", order="o1", by="alice", reason="payment_not_received", appeal="a1")

    refused(engine, "invalid_state", "request_refund", appeal="a1", by="carol", amount="10")
    refused(engine, "invalid_state", "request_payment_proof", appeal="a1", by="carol")
    refused(engine, "invalid_state", "resolve_appeal", appeal="a1", by="carol", outcome="release")
    refused(engine, "invalid_state", "resolve_appeal", appeal="a1", by="carol", outcome="cancel")
    refused(engine, "not_authorized", "start_review", appeal="a1", by="alice")
    refused(engine, "not_authorized", "start_review", appeal="a1", by="bob")
    do(engine, "add_evidence", appeal="a1", by="bob", description="receipt")  # A8: any time
    assert_appeal(engine, "open")

    do(engine, "start_review", appeal="a1", by="carol")
    assert_appeal(engine, "under_review")
    assert engine.appeal("a1").agent == "carol"
    refused(engine, "invalid_state", "start_review", appeal="a1", by="dave")
    assert_order(engine, "in_appeal", "locked", open_appeal="a1")


def test_R4_resolve_only_from_under_review(engine: Escrow) -> None:
    appeal_in_review(engine, "insufficient_payment", by="alice", paid_amount="400")
    do(engine, "agree_top_up", appeal="a1", by="bob")

    refused(engine, "invalid_state", "resolve_appeal", appeal="a1", by="carol", outcome="release")
    refused(engine, "invalid_state", "resolve_appeal", appeal="a1", by="carol", outcome="cancel")
    do(engine, "confirm_top_up", appeal="a1", by="carol")
    do(engine, "request_refund", appeal="a1", by="carol", amount="10")
    refused(engine, "invalid_state", "resolve_appeal", appeal="a1", by="carol", outcome="release")
    assert_appeal(engine, "awaiting_refund", refund_state="requested")
    assert_order(engine, "in_appeal", "locked", open_appeal="a1")


# --- R5: payment proof (C1) -------------------------------------------------------------------


def test_R5_payment_proof_only_in_C1_with_a_non_instant_method(engine: Escrow) -> None:
    appeal_in_review(engine, "insufficient_payment", by="alice", instant=False)
    refused(engine, "invalid_state", "request_payment_proof", appeal="a1", by="carol")
    refused(engine, "not_authorized", "request_payment_proof", appeal="a1", by="alice")
    assert_appeal(engine, "under_review")


def test_R5_proof_moves_the_appeal_back_to_review(engine: Escrow, clock: ManualClock) -> None:
    appeal_in_review(engine, "payment_not_received", by="alice", instant=False)
    refused(engine, "invalid_state", "submit_payment_proof", appeal="a1", by="bob")
    do(engine, "request_payment_proof", appeal="a1", by="carol")
    refused(engine, "invalid_state", "request_payment_proof", appeal="a1", by="carol")
    refused(engine, "not_authorized", "submit_payment_proof", appeal="a1", by="alice")
    refused(engine, "not_authorized", "submit_payment_proof", appeal="a1", by="carol")

    do(engine, "submit_payment_proof", appeal="a1", by="bob", refs=["sepa-1"])

    assert_appeal(engine, "under_review")
    assert engine.appeal("a1").proof_deadline is None
    clock.advance(timedelta(days=2))
    assert engine.tick() == []
    assert_order(engine, "in_appeal", "locked", open_appeal="a1")


def test_R5_deadline_comes_from_the_policy(
    make_engine: Callable[..., Escrow], clock: ManualClock
) -> None:
    engine = make_engine(policy=Policy(payment_proof_deadline=timedelta(days=1)))
    appeal_in_review(engine, "payment_not_received", by="alice", instant=False)
    do(engine, "request_payment_proof", appeal="a1", by="carol")
    assert engine.appeal("a1").proof_deadline == clock.now() + timedelta(days=1)

    clock.advance(timedelta(days=1))
    before = event_count(engine)
    engine.tick()

    assert event_count(engine) == before + 2  # the appeal resolves and the order cancels
    assert_appeal(engine, "resolved", outcome="cancel")
    assert_order(engine, "cancelled", "returned")
    assert_ledger(engine, in_escrow="0", returned="500")


def test_R5_deadline_on_a_cancelled_order_changes_nothing_on_it(
    engine: Escrow, clock: ManualClock
) -> None:
    """A2: the buyer cancelled after paying; the seller still disputes the payment."""
    paid_order(engine, instant=False)
    do(engine, "cancel_order", order="o1", by="bob")
    do(engine, "open_appeal", order="o1", by="alice", reason="payment_not_received", appeal="a1")
    do(engine, "start_review", appeal="a1", by="carol")
    do(engine, "request_payment_proof", appeal="a1", by="carol")

    clock.advance(timedelta(days=2))
    engine.tick()

    assert_appeal(engine, "resolved", outcome="none")
    assert_order(engine, "cancelled", "returned")
    assert_ledger(engine, in_escrow="0", returned="500")


# --- R6: top-up (C2) --------------------------------------------------------------------------


def test_R6_confirmed_top_up_is_added_to_the_paid_amount(engine: Escrow) -> None:
    appeal_in_review(engine, "insufficient_payment", by="alice", paid_amount="400")
    refused(engine, "invalid_state", "confirm_top_up", appeal="a1", by="carol")  # not agreed
    do(engine, "agree_top_up", appeal="a1", by="bob")
    refused(engine, "invalid_state", "agree_top_up", appeal="a1", by="bob")

    do(engine, "confirm_top_up", appeal="a1", by="carol", amount="30")

    assert engine.order("o1").paid_amount == Decimal("430")
    assert_appeal(engine, "under_review")
    assert engine.appeal("a1").top_up == "confirmed"
    do(engine, "resolve_appeal", appeal="a1", by="carol", outcome="release")
    assert_order(engine, "completed", "released")
    assert_ledger(engine, in_escrow="0", released="500")


def test_R6_top_up_only_in_C2_and_from_review(engine: Escrow) -> None:
    paid_order(engine)
    do(engine, "open_appeal", order="o1", by="alice", reason="insufficient_payment", appeal="a1")
    refused(engine, "invalid_state", "agree_top_up", appeal="a1", by="bob")  # still open
    refused(engine, "invalid_state", "refuse_top_up", appeal="a1", by="bob")
    do(engine, "cancel_appeal", appeal="a1", by="alice")

    do(engine, "open_appeal", order="o1", by="alice", reason="non_real_name_payment", appeal="a2")
    do(engine, "start_review", appeal="a2", by="carol")
    refused(engine, "invalid_state", "agree_top_up", appeal="a2", by="bob")
    refused(engine, "invalid_state", "refuse_top_up", appeal="a2", by="bob")
    assert_appeal(engine, "under_review", ref="a2")


def test_R6_refusal_from_awaiting_top_up_then_cs_requests_the_refund(engine: Escrow) -> None:
    appeal_in_review(engine, "insufficient_payment", by="alice", paid_amount="400")
    do(engine, "agree_top_up", appeal="a1", by="bob")

    do(engine, "refuse_top_up", appeal="a1", by="bob")

    assert_appeal(engine, "under_review")
    assert engine.appeal("a1").top_up == "refused"
    refused(engine, "invalid_state", "confirm_top_up", appeal="a1", by="carol")
    do(engine, "request_refund", appeal="a1", by="carol", amount="390")
    assert_appeal(engine, "awaiting_refund", refund_state="requested")
    assert engine.order("o1").paid_amount == Decimal("400")


# --- R7: freeze proof window (C4) -------------------------------------------------------------


def test_R7_opening_waits_for_the_freeze_proof(engine: Escrow, clock: ManualClock) -> None:
    paid_order(engine)
    do(engine, "open_appeal", order="o1", by="alice", reason="bank_account_frozen", appeal="a1")

    assert_appeal(engine, "awaiting_freeze_proof")
    assert_sanctioned(engine, "bob", {"trading_suspension_24h"})
    do(engine, "submit_freeze_proof", appeal="a1", by="alice", refs=["letter"])
    assert_appeal(engine, "under_review")
    refused(engine, "invalid_state", "submit_freeze_proof", appeal="a1", by="alice")

    # The window no longer applies; nothing fires for the appeal, only S2's own expiry.
    clock.advance(timedelta(hours=24))
    fired = engine.tick()
    assert [o.command for o in fired] == ["expire_sanctions"]
    assert_appeal(engine, "under_review")
    assert_free(engine, "bob")


def test_R7_window_comes_from_the_policy(
    make_engine: Callable[..., Escrow], clock: ManualClock
) -> None:
    engine = make_engine(policy=Policy(freeze_proof_window=timedelta(hours=12)))
    paid_order(engine)
    do(engine, "open_appeal", order="o1", by="alice", reason="bank_account_frozen", appeal="a1")
    clock.advance(timedelta(hours=12))

    engine.tick()

    assert_appeal(engine, "under_review")
    refused(engine, "deadline_passed", "submit_freeze_proof", appeal="a1", by="alice")
    # S2 is its own policy value (24h), not the proof window.
    assert_sanctioned(engine, "bob", {"trading_suspension_24h"})
    clock.advance(timedelta(hours=12))
    engine.tick()
    assert_free(engine, "bob")


# --- Settled details: refunds ---------------------------------------------------------------


def test_refunds_any_appeal_may_carry_one(engine: Escrow) -> None:
    appeal_in_review(engine, "verbal_abuse")

    do(engine, "request_refund", appeal="a1", by="carol", amount="20")
    do(engine, "confirm_refund", appeal="a1", by="carol")
    do(engine, "resolve_appeal", appeal="a1", by="carol")

    assert_appeal(engine, "resolved", outcome="none", refund_state="confirmed")
    assert_order(engine, "paid", "locked")


def test_refunds_one_request_open_at_a_time(engine: Escrow) -> None:
    appeal_in_review(engine)
    do(engine, "request_refund", appeal="a1", by="carol", amount="100")

    refused(engine, "invalid_state", "request_refund", appeal="a1", by="carol", amount="50")
    do(engine, "confirm_refund", appeal="a1", by="carol")
    do(engine, "request_refund", appeal="a1", by="carol", amount="50")
    do(engine, "refuse_refund", appeal="a1", by="alice")
    do(engine, "request_refund", appeal="a1", by="carol", amount="60")

    refunds = engine.appeal("a1").refunds
    assert [(r.amount, r.state) for r in refunds] == [
        (Decimal(100), "confirmed"),
        (Decimal(50), "refused"),
        (Decimal(60), "requested"),
    ]
    assert_appeal(engine, "awaiting_refund", refund_state="requested")


def test_refunds_cs_may_confirm_one_the_seller_did_not_report(engine: Escrow) -> None:
    appeal_in_review(engine)
    do(engine, "request_refund", appeal="a1", by="carol", amount="75")

    do(engine, "confirm_refund", appeal="a1", by="carol")

    refund = engine.appeal("a1").refunds[-1]
    assert (refund.state, refund.reported) == ("confirmed", None)
    assert_appeal(engine, "under_review", refund_state="confirmed")
