"""Resolution guidelines for the seller's appeal reasons (rules.md C1–C5, with R5–R7).

Each test plays a guideline end to end through the embedding API, on memory, SQLite and
PostgreSQL, including the deadlines that the system fires (`clock.advance`, `engine.tick`),
and checks the order and appeal states, the escrow and ledger, the sanctions, and that refused
commands carry their code and store nothing.
"""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from typing import Any

from escrow.clock import ManualClock
from escrow.commands.api import Escrow
from tests.helpers import (
    assert_appeal,
    assert_free,
    assert_ledger,
    assert_order,
    assert_sanctioned,
    do,
    event_count,
    order_fields,
    refused,
)

# --- small local vocabulary ----------------------------------------------------------------


def seller_appeal(
    engine: Escrow,
    reason: str,
    *,
    review: bool = True,
    paid_amount: str | None = None,
    **order: Any,
) -> None:
    """o1 paid by bob (optionally another amount), appeal a1 opened by the seller alice."""
    do(engine, "create_order", **order_fields("o1", **order))
    paid = {} if paid_amount is None else {"paid_amount": paid_amount}
    do(engine, "mark_paid", order="o1", by="bob", **paid)
    do(engine, "open_appeal", order="o1", by="alice", reason=reason, appeal="a1")
    if review:
        do(engine, "start_review", appeal="a1", by="carol")


# --- C1: payment not received ---------------------------------------------------------------


def test_C1_proof_in_time_then_cs_releases(engine: Escrow, clock: ManualClock) -> None:
    seller_appeal(engine, "payment_not_received", instant=False)
    do(engine, "request_payment_proof", appeal="a1", by="carol")
    assert_appeal(engine, "awaiting_payment_proof")
    assert engine.appeal("a1").proof_deadline == clock.now() + timedelta(days=2)

    clock.advance(timedelta(days=2) - timedelta(seconds=1))
    engine.tick()
    assert_appeal(engine, "awaiting_payment_proof")
    do(engine, "submit_payment_proof", appeal="a1", by="bob", refs=["swift-123"])
    assert_appeal(engine, "under_review")

    # The deadline no longer applies: it never fires.
    clock.advance(timedelta(days=3))
    before = event_count(engine)
    engine.tick()
    assert event_count(engine) == before
    assert_appeal(engine, "under_review")
    assert_order(engine, "in_appeal", "locked", open_appeal="a1")

    do(engine, "resolve_appeal", appeal="a1", by="carol", outcome="release")
    assert_appeal(engine, "resolved", outcome="release")
    assert_order(engine, "completed", "released")
    assert_ledger(engine, in_escrow="0", released="500")
    assert_free(engine, "alice", "bob")


def test_C1_deadline_passing_cancels_the_order(engine: Escrow, clock: ManualClock) -> None:
    seller_appeal(engine, "payment_not_received", instant=False)
    do(engine, "request_payment_proof", appeal="a1", by="carol")

    clock.advance(timedelta(days=2))
    fired = engine.tick()

    assert [o.command for o in fired] == ["expire_payment_proof"]
    assert {r.actor for r in fired[0].recorded} == {"system"}
    assert_appeal(engine, "resolved", outcome="cancel")
    assert_order(engine, "cancelled", "returned")
    assert_ledger(engine, in_escrow="0", returned="500")
    assert_free(engine, "alice", "bob")
    refused(engine, "deadline_passed", "submit_payment_proof", appeal="a1", by="bob")
    refused(engine, "invalid_state", "release", order="o1", by="alice")
    before = event_count(engine)
    assert engine.tick() == []  # fires once
    assert event_count(engine) == before


def test_C1_proof_refused_at_the_deadline_even_before_the_system_fires(
    engine: Escrow, clock: ManualClock
) -> None:
    seller_appeal(engine, "payment_not_received", instant=False)
    do(engine, "request_payment_proof", appeal="a1", by="carol")
    clock.advance(timedelta(days=2))  # the scheduler lags: no tick yet

    refused(engine, "deadline_passed", "submit_payment_proof", appeal="a1", by="bob")
    assert_appeal(engine, "awaiting_payment_proof")

    engine.tick()
    assert_appeal(engine, "resolved", outcome="cancel")
    assert_order(engine, "cancelled", "returned")


def test_C1_instant_method_cs_decides_directly(engine: Escrow) -> None:
    seller_appeal(engine, "payment_not_received", instant=True)

    error = refused(engine, "invalid_state", "request_payment_proof", appeal="a1", by="carol")
    assert error.rule == "R5"
    assert_appeal(engine, "under_review")

    do(engine, "resolve_appeal", appeal="a1", by="carol", outcome="cancel")
    assert_appeal(engine, "resolved", outcome="cancel")
    assert_order(engine, "cancelled", "returned")
    assert_ledger(engine, in_escrow="0", returned="500")


def test_C1_without_asking_for_proof_when_evidence_is_clear(engine: Escrow) -> None:
    """Settled details: CS may resolve C1 directly even for a non-instant method."""
    seller_appeal(engine, "payment_not_received", instant=False)
    do(engine, "add_evidence", appeal="a1", by="bob", description="bank statement", refs=["st-1"])

    do(engine, "resolve_appeal", appeal="a1", by="carol", outcome="release")

    assert_appeal(engine, "resolved", outcome="release")
    assert_order(engine, "completed", "released")
    assert_ledger(engine, in_escrow="0", released="500")


def test_C1_deadline_on_a_terminal_order_resolves_with_no_outcome(
    engine: Escrow, clock: ManualClock
) -> None:
    """A2: the seller released, then says the money never came; the order stays completed."""
    do(engine, "create_order", **order_fields("o1", instant=False))
    do(engine, "mark_paid", order="o1", by="bob")
    do(engine, "release", order="o1", by="alice")
    do(engine, "open_appeal", order="o1", by="alice", reason="payment_not_received", appeal="a1")
    assert_order(engine, "completed", "released", open_appeal="a1")
    do(engine, "start_review", appeal="a1", by="carol")
    do(engine, "request_payment_proof", appeal="a1", by="carol")

    clock.advance(timedelta(days=2))
    engine.tick()

    assert_appeal(engine, "resolved", outcome="none")
    assert_order(engine, "completed", "released")
    assert_ledger(engine, in_escrow="0", released="500")
    assert_free(engine, "alice", "bob")


# --- C2: insufficient payment ---------------------------------------------------------------


def test_C2_buyer_tops_up_then_cs_releases(engine: Escrow) -> None:
    seller_appeal(engine, "insufficient_payment", paid_amount="400")  # 460 due

    do(engine, "agree_top_up", appeal="a1", by="bob")
    assert_appeal(engine, "awaiting_top_up")
    assert engine.appeal("a1").top_up == "agreed"
    # R6: no release before CS has confirmed the top-up.
    refused(engine, "invalid_state", "resolve_appeal", appeal="a1", by="carol", outcome="release")
    do(engine, "confirm_top_up", appeal="a1", by="carol")
    assert_appeal(engine, "under_review")
    assert engine.appeal("a1").top_up == "confirmed"
    assert engine.order("o1").paid_amount == Decimal("460")

    do(engine, "resolve_appeal", appeal="a1", by="carol", outcome="release")

    assert_appeal(engine, "resolved", outcome="release")
    assert_order(engine, "completed", "released")
    assert_ledger(engine, in_escrow="0", released="500")
    assert_free(engine, "alice", "bob")


def test_C2_refused_top_up_refund_less_fees_before_cancel(engine: Escrow) -> None:
    seller_appeal(engine, "insufficient_payment", paid_amount="400")

    do(engine, "refuse_top_up", appeal="a1", by="bob")
    assert_appeal(engine, "under_review")
    assert engine.appeal("a1").top_up == "refused"
    # R2: the cancel needs a settled refund; R3: at most what was received.
    refused(engine, "refund_pending", "resolve_appeal", appeal="a1", by="carol", outcome="cancel")
    refused(
        engine, "amount_exceeds_limit", "request_refund", appeal="a1", by="carol", amount="400.01"
    )
    do(engine, "request_refund", appeal="a1", by="carol", amount="395", note="less 5 EUR fees")
    do(engine, "report_refund", appeal="a1", by="alice", amount="395", reference="TX-3")
    do(engine, "confirm_refund", appeal="a1", by="carol")

    do(engine, "resolve_appeal", appeal="a1", by="carol", outcome="cancel")

    assert_appeal(engine, "resolved", outcome="cancel", refund_state="confirmed")
    assert_order(engine, "cancelled", "returned")
    assert_ledger(engine, in_escrow="0", returned="500")
    assert_free(engine, "alice", "bob")


def test_C2_buyer_going_back_on_a_top_up_needs_the_refund_too(engine: Escrow) -> None:
    seller_appeal(engine, "insufficient_payment", paid_amount="400")
    do(engine, "agree_top_up", appeal="a1", by="bob")

    do(engine, "refuse_top_up", appeal="a1", by="bob")

    assert_appeal(engine, "under_review")
    refused(engine, "refund_pending", "resolve_appeal", appeal="a1", by="carol", outcome="cancel")
    do(engine, "request_refund", appeal="a1", by="carol", amount="400")
    do(engine, "refuse_refund", appeal="a1", by="alice")
    assert_sanctioned(engine, "alice", {"p2p_suspension"})
    do(engine, "resolve_appeal", appeal="a1", by="carol", outcome="cancel")
    assert_appeal(engine, "resolved", outcome="cancel", refund_state="refused")
    assert_order(engine, "cancelled", "returned")
    assert_ledger(engine, in_escrow="0", returned="500")


def test_C2_release_without_top_up_when_the_seller_accepts_the_shortfall(engine: Escrow) -> None:
    seller_appeal(engine, "insufficient_payment", paid_amount="400")
    do(engine, "add_evidence", appeal="a1", by="alice", description="I accept 400")

    do(engine, "resolve_appeal", appeal="a1", by="carol", outcome="release")

    assert_appeal(engine, "resolved", outcome="release")
    assert_order(engine, "completed", "released")
    assert engine.order("o1").paid_amount == Decimal("400")


def test_C2_only_the_buyer_answers_the_top_up(engine: Escrow) -> None:
    seller_appeal(engine, "insufficient_payment", paid_amount="400")

    refused(engine, "not_authorized", "agree_top_up", appeal="a1", by="alice")
    refused(engine, "not_authorized", "refuse_top_up", appeal="a1", by="carol")
    refused(engine, "not_authorized", "confirm_top_up", appeal="a1", by="bob")
    assert_appeal(engine, "under_review")


# --- C3: payment from an account not in the buyer's name -----------------------------------


def test_C3_seller_accepts_the_payment_cs_releases(engine: Escrow) -> None:
    seller_appeal(engine, "non_real_name_payment")
    do(engine, "add_evidence", appeal="a1", by="alice", description="I accept this payment")

    do(engine, "resolve_appeal", appeal="a1", by="carol", outcome="release")

    assert_appeal(engine, "resolved", outcome="release")
    assert_order(engine, "completed", "released")
    assert_ledger(engine, in_escrow="0", released="500")
    assert_free(engine, "alice", "bob")


def test_C3_seller_refuses_the_payment_refund_then_cancel(engine: Escrow) -> None:
    seller_appeal(engine, "non_real_name_payment")
    do(engine, "add_evidence", appeal="a1", by="alice", description="I do not accept it")

    refused(engine, "refund_pending", "resolve_appeal", appeal="a1", by="carol", outcome="cancel")
    do(engine, "request_refund", appeal="a1", by="carol", amount="460")
    refused(engine, "refund_pending", "resolve_appeal", appeal="a1", by="carol", outcome="cancel")
    do(engine, "report_refund", appeal="a1", by="alice", amount="460", reference="TX-4")
    do(engine, "confirm_refund", appeal="a1", by="carol")

    do(engine, "resolve_appeal", appeal="a1", by="carol", outcome="cancel")

    assert_appeal(engine, "resolved", outcome="cancel", refund_state="confirmed")
    assert_order(engine, "cancelled", "returned")
    assert_ledger(engine, in_escrow="0", returned="500")
    assert_free(engine, "alice", "bob")


def test_C3_seller_refusing_the_refund_is_suspended_then_cancel(engine: Escrow) -> None:
    seller_appeal(engine, "non_real_name_payment")
    do(engine, "request_refund", appeal="a1", by="carol", amount="460")

    do(engine, "refuse_refund", appeal="a1", by="alice")

    assert_sanctioned(engine, "alice", {"p2p_suspension"})
    assert_free(engine, "bob")
    do(engine, "resolve_appeal", appeal="a1", by="carol", outcome="cancel")
    assert_appeal(engine, "resolved", outcome="cancel", refund_state="refused")
    assert_order(engine, "cancelled", "returned")
    assert_ledger(engine, in_escrow="0", returned="500")


# --- C4: the seller's bank account was frozen -----------------------------------------------


def test_C4_opening_suspends_the_buyer_for_24_hours(engine: Escrow, clock: ManualClock) -> None:
    seller_appeal(engine, "bank_account_frozen", review=False)

    assert_appeal(engine, "awaiting_freeze_proof")
    assert engine.appeal("a1").freeze_deadline == clock.now() + timedelta(hours=24)
    assert_order(engine, "in_appeal", "locked", open_appeal="a1")
    assert_sanctioned(engine, "bob", {"trading_suspension_24h"})
    s2 = engine.trader("bob").sanctions[0]
    assert (s2.appeal, s2.expires_at) == ("a1", clock.now() + timedelta(hours=24))
    assert_free(engine, "alice")
    refused(engine, "trader_suspended", "create_order", **order_fields("o2", seller="erin"))
    # The suspension never stops the buyer taking part in this appeal.
    do(engine, "add_evidence", appeal="a1", by="bob", description="my bank statement")


def test_C4_proof_in_time_and_a_buyer_who_does_not_cooperate_gets_S4(
    engine: Escrow, clock: ManualClock
) -> None:
    seller_appeal(engine, "bank_account_frozen", review=False)
    clock.advance(timedelta(hours=23, minutes=59))

    do(engine, "submit_freeze_proof", appeal="a1", by="alice", refs=["bank-letter-7"])
    assert_appeal(engine, "under_review")
    do(engine, "apply_sanction", trader="bob", by="carol", kind="permanent_suspension", appeal="a1")
    assert_sanctioned(engine, "bob", {"trading_suspension_24h", "permanent_suspension"})

    # S2 ends at 24h; S4 stays.
    clock.advance(timedelta(minutes=1))
    engine.tick()
    assert_sanctioned(engine, "bob", {"permanent_suspension"})
    clock.advance(timedelta(days=400))
    engine.tick()
    assert_sanctioned(engine, "bob", {"permanent_suspension"})
    refused(engine, "trader_suspended", "create_order", **order_fields("o2", seller="erin"))

    do(engine, "resolve_appeal", appeal="a1", by="carol", outcome="cancel")
    assert_appeal(engine, "resolved", outcome="cancel")
    assert_order(engine, "cancelled", "returned")
    assert_ledger(engine, in_escrow="0", returned="500")
    assert_sanctioned(engine, "bob", {"permanent_suspension"})
    assert_free(engine, "alice")


def test_C4_window_passing_ends_the_temporary_suspension(
    engine: Escrow, clock: ManualClock
) -> None:
    seller_appeal(engine, "bank_account_frozen", review=False)
    clock.advance(timedelta(hours=24))

    # At 24h the window is closed and S2 over, even before the system fires.
    refused(engine, "deadline_passed", "submit_freeze_proof", appeal="a1", by="alice")
    assert_free(engine, "bob")
    engine.tick()

    assert_appeal(engine, "under_review")
    assert engine.appeal("a1").freeze_deadline is None
    assert_free(engine, "alice", "bob")
    refused(engine, "deadline_passed", "submit_freeze_proof", appeal="a1", by="alice")
    do(engine, "create_order", **order_fields("o2", seller="erin"))
    do(engine, "resolve_appeal", appeal="a1", by="carol", outcome="release")
    assert_appeal(engine, "resolved", outcome="release")
    assert_order(engine, "completed", "released")
    assert_ledger(engine, in_escrow="500", released="500")


def test_C4_suspension_runs_its_full_24_hours_after_the_appeal_is_withdrawn(
    engine: Escrow, clock: ManualClock
) -> None:
    seller_appeal(engine, "bank_account_frozen", review=False)
    clock.advance(timedelta(hours=1))

    do(engine, "cancel_appeal", appeal="a1", by="alice")

    assert_appeal(engine, "cancelled")
    assert_order(engine, "paid", "locked")
    assert_sanctioned(engine, "bob", {"trading_suspension_24h"})
    clock.advance(timedelta(hours=22, minutes=59))
    engine.tick()
    assert_sanctioned(engine, "bob", {"trading_suspension_24h"})
    clock.advance(timedelta(minutes=1))
    engine.tick()
    assert_free(engine, "bob")


def test_C4_suspension_outlasts_a_quick_resolution(engine: Escrow, clock: ManualClock) -> None:
    """Settled details: S2 lasts its full 24 hours whatever happens to the appeal."""
    seller_appeal(engine, "bank_account_frozen", review=False)
    clock.advance(timedelta(hours=1))
    do(engine, "submit_freeze_proof", appeal="a1", by="alice")
    do(engine, "add_evidence", appeal="a1", by="bob", description="I will call my bank")
    do(engine, "resolve_appeal", appeal="a1", by="carol", outcome="release")
    assert_appeal(engine, "resolved", outcome="release")
    assert_order(engine, "completed", "released")

    clock.advance(timedelta(hours=22, minutes=59))
    engine.tick()
    assert_sanctioned(engine, "bob", {"trading_suspension_24h"})
    clock.advance(timedelta(minutes=1))
    engine.tick()
    assert_free(engine, "alice", "bob")
    assert_ledger(engine, in_escrow="0", released="500")


def test_C4_proof_and_window_belong_to_the_seller(engine: Escrow) -> None:
    seller_appeal(engine, "bank_account_frozen", review=False)

    refused(engine, "not_authorized", "submit_freeze_proof", appeal="a1", by="bob")
    refused(engine, "not_authorized", "submit_freeze_proof", appeal="a1", by="carol")
    # CS waits for the proof or the window (R7) before reviewing.
    refused(engine, "invalid_state", "start_review", appeal="a1", by="carol")
    assert_appeal(engine, "awaiting_freeze_proof")


# --- C5: verbal abuse (seller side) --------------------------------------------------------


def test_C5_verbal_abuse_by_the_buyer_resolved_with_no_outcome(engine: Escrow) -> None:
    seller_appeal(engine, "verbal_abuse")
    assert_order(engine, "in_appeal", "locked", open_appeal="a1")

    do(engine, "apply_sanction", trader="bob", by="carol", kind="partial_ban", appeal="a1")
    do(engine, "resolve_appeal", appeal="a1", by="carol")

    assert_appeal(engine, "resolved", outcome="none")
    assert_order(engine, "paid", "locked")
    assert_ledger(engine, in_escrow="500")
    assert_sanctioned(engine, "bob", {"partial_ban"})
    assert_free(engine, "alice")
    do(engine, "release", order="o1", by="alice")
    assert_order(engine, "completed", "released")
    assert_ledger(engine, in_escrow="0", released="500")


def test_C5_each_party_keeps_its_own_verbal_abuse_issue(engine: Escrow) -> None:
    """A3: the seller's resolved report closes the seller's issue only."""
    seller_appeal(engine, "verbal_abuse")
    do(engine, "resolve_appeal", appeal="a1", by="carol")

    refused(
        engine,
        "issue_already_resolved",
        "open_appeal",
        order="o1",
        by="alice",
        reason="verbal_abuse",
        appeal="a2",
    )
    do(engine, "open_appeal", order="o1", by="bob", reason="verbal_abuse", appeal="a2")
    assert_order(engine, "in_appeal", "locked", open_appeal="a2")
    do(engine, "start_review", appeal="a2", by="dave")
    do(engine, "resolve_appeal", appeal="a2", by="dave")
    assert_appeal(engine, "resolved", outcome="none", ref="a2")
    refused(
        engine,
        "issue_already_resolved",
        "open_appeal",
        order="o1",
        by="bob",
        reason="verbal_abuse",
        appeal="a3",
    )
    assert_order(engine, "paid", "locked")
