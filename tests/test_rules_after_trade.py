"""After the trade (rules.md): payment reversals and their clawback (C6, K1–K5), formal
complaints (E1–E6), and the two settled details the same issue names.

Each test runs through the embedding API on memory, SQLite and PostgreSQL and checks states,
sanctions and ledger figures; refusals carry their code and store nothing (`refused`).
"""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

from escrow.clock import ManualClock
from escrow.commands.api import Escrow
from tests.helpers import (
    assert_appeal,
    assert_free,
    assert_order,
    assert_sanctioned,
    do,
    event_count,
    order_fields,
    paid_order,
    refused,
)

S2, S4 = "trading_suspension_24h", "permanent_suspension"


def released_then_reversed(engine: Escrow, review: bool = True) -> None:
    """o1 (500 USDT for 460 EUR) released to bob; alice appeals the reversed payment (a1)."""
    paid_order(engine)
    do(engine, "release", order="o1", by="alice")
    do(engine, "open_appeal", order="o1", by="alice", reason="payment_reversed", appeal="a1")
    if review:
        do(engine, "start_review", appeal="a1", by="carol")


def clawback_figures(engine: Escrow) -> tuple[Decimal, Decimal, Decimal, Decimal, Decimal]:
    ledger = engine.ledger("USDT")
    return (
        ledger.in_escrow,
        ledger.released,
        ledger.returned,
        ledger.clawback_owed,
        ledger.clawback_recovered,
    )


def resolved_b1(engine: Escrow, resolver: str = "carol") -> None:
    """a1: bob's B1 appeal on o1, resolved with a release by `resolver`."""
    paid_order(engine)
    do(engine, "open_appeal", order="o1", by="bob", reason="seller_not_releasing", appeal="a1")
    do(engine, "start_review", appeal="a1", by=resolver)
    do(engine, "resolve_appeal", appeal="a1", by=resolver, outcome="release")


def file(engine: Escrow, ref: str = "k1", by: str = "alice") -> None:
    do(engine, "file_complaint", complaint=ref, appeal="a1", by=by, statement="I was not paid")


# --- C6: payment reversed ------------------------------------------------------------------


def test_C6_opened_on_a_completed_order_suspends_the_buyer(engine: Escrow) -> None:
    released_then_reversed(engine, review=False)
    assert_appeal(engine, "open")
    assert engine.appeal("a1").rule == "C6"
    assert_sanctioned(engine, "bob", {S2})
    assert_order(engine, "completed", "released", open_appeal="a1")


def test_C6_only_the_seller_only_on_a_completed_order_within_the_window(
    engine: Escrow, clock: ManualClock
) -> None:
    paid_order(engine)
    fields = dict(order="o1", reason="payment_reversed", appeal="a1")
    refused(engine, "appeal_not_allowed", "open_appeal", by="alice", **fields)
    refused(engine, "not_authorized", "open_appeal", by="bob", **fields)
    do(engine, "cancel_order", order="o1", by="bob")
    refused(engine, "appeal_not_allowed", "open_appeal", by="alice", **fields)
    do(engine, "create_order", **order_fields("o2"))
    do(engine, "mark_paid", order="o2", by="bob")
    do(engine, "release", order="o2", by="alice")
    clock.advance(timedelta(days=60))
    refused(engine, "appeal_not_allowed", "open_appeal", **dict(fields, order="o2"), by="alice")
    assert_free(engine, "bob")


# --- K1–K5: the clawback -----------------------------------------------------------------


def test_K1_confirmed_reversal_opens_the_clawback_and_suspends_for_good(engine: Escrow) -> None:
    released_then_reversed(engine)
    refused(
        engine, "amount_exceeds_limit", "confirm_reversal", appeal="a1", by="carol", amount="501"
    )
    refused(engine, "not_authorized", "confirm_reversal", appeal="a1", by="alice", amount="500")
    do(engine, "confirm_reversal", appeal="a1", by="carol", amount="500")
    view = engine.appeal("a1")
    assert (view.state, view.clawback, view.clawback_state) == ("under_review", 500, "open")
    assert_sanctioned(engine, "bob", {S2, S4})
    assert engine.trader("bob").sanctions[-1].appeal == "a1"
    refused(engine, "invalid_state", "confirm_reversal", appeal="a1", by="carol", amount="1")
    # a confirmed reversal is CS's decision: the seller can no longer withdraw the appeal
    refused(engine, "invalid_state", "cancel_appeal", appeal="a1", by="alice")
    assert clawback_figures(engine) == (0, 500, 0, 500, 0)


def test_K1_only_in_a_reviewed_C6_appeal_and_no_second_S4(engine: Escrow) -> None:
    released_then_reversed(engine, review=False)
    refused(engine, "invalid_state", "confirm_reversal", appeal="a1", by="carol", amount="5")
    do(engine, "start_review", appeal="a1", by="carol")
    do(engine, "apply_sanction", trader="bob", by="carol", kind="permanent_suspension")
    do(engine, "confirm_reversal", appeal="a1", by="carol", amount="5")
    assert [s.kind for s in engine.trader("bob").sanctions].count(S4) == 1
    do(engine, "create_order", **order_fields("o2", buyer="erin"))
    do(engine, "mark_paid", order="o2", by="erin")
    do(engine, "open_appeal", order="o2", by="erin", reason="seller_not_releasing", appeal="a2")
    do(engine, "start_review", appeal="a2", by="carol")
    refused(engine, "invalid_state", "confirm_reversal", appeal="a2", by="carol", amount="5")


def test_K2_recoveries_up_to_the_clawback_also_after_resolution(engine: Escrow) -> None:
    released_then_reversed(engine)
    refused(engine, "invalid_state", "record_recovery", appeal="a1", by="carol", amount="1000")
    do(engine, "confirm_reversal", appeal="a1", by="carol", amount="400")
    do(engine, "record_recovery", appeal="a1", by="carol", amount="150")
    do(engine, "resolve_appeal", appeal="a1", by="carol")
    assert_appeal(engine, "resolved", outcome="none")
    refused(
        engine, "amount_exceeds_limit", "record_recovery", appeal="a1", by="carol", amount="251"
    )
    do(engine, "record_recovery", appeal="a1", by="carol", amount="250")
    assert engine.appeal("a1").clawback_state == "recovered"
    assert clawback_figures(engine) == (0, 500, 0, 0, 400)
    refused(engine, "invalid_state", "record_recovery", appeal="a1", by="carol", amount="1000")
    assert_order(engine, "completed", "released")


def test_K3_waiving_closes_the_clawback_and_keeps_what_was_recovered(engine: Escrow) -> None:
    released_then_reversed(engine)
    refused(engine, "invalid_state", "waive_clawback", appeal="a1", by="carol")
    do(engine, "confirm_reversal", appeal="a1", by="carol", amount="500")
    do(engine, "record_recovery", appeal="a1", by="carol", amount="100")
    refused(engine, "not_authorized", "waive_clawback", appeal="a1", by="alice")
    do(engine, "waive_clawback", appeal="a1", by="carol")
    assert engine.appeal("a1").clawback_state == "waived"
    assert engine.appeal("a1").recovered == 100
    assert clawback_figures(engine) == (0, 500, 0, 0, 100)
    assert_sanctioned(engine, "bob", {S2, S4})  # CS lifts the S4 separately
    refused(engine, "invalid_state", "waive_clawback", appeal="a1", by="carol")


def test_K4_ledger_sums_clawbacks_per_asset_and_never_moves_escrow(engine: Escrow) -> None:
    released_then_reversed(engine)
    do(engine, "confirm_reversal", appeal="a1", by="carol", amount="300")
    do(engine, "create_order", **order_fields("o2", amount="200", buyer="erin"))
    assert clawback_figures(engine) == (200, 500, 0, 300, 0)
    do(engine, "record_recovery", appeal="a1", by="carol", amount="0.5")
    assert clawback_figures(engine) == (200, 500, 0, Decimal("299.5"), Decimal("0.5"))
    assert engine.ledgers()[0].clawback_owed == Decimal("299.5")
    assert engine.ledger("BTC").clawback_owed == 0


def test_K5_a_rejected_reversal_resolves_with_no_outcome_and_S2_runs_out(
    engine: Escrow, clock: ManualClock
) -> None:
    released_then_reversed(engine)
    refused(engine, "validation_error", "resolve_appeal", appeal="a1", by="carol", outcome="cancel")
    do(engine, "resolve_appeal", appeal="a1", by="carol")
    assert_appeal(engine, "resolved", outcome="none")
    assert engine.appeal("a1").clawback_state is None
    assert clawback_figures(engine) == (0, 500, 0, 0, 0)
    assert_sanctioned(engine, "bob", {S2})
    clock.advance(timedelta(hours=24))
    engine.tick()
    assert_free(engine, "bob")


# --- E1–E6: complaints ---------------------------------------------------------------------


def test_E1_a_party_files_about_a_resolved_appeal_within_the_window(
    engine: Escrow, clock: ManualClock
) -> None:
    paid_order(engine)
    do(engine, "open_appeal", order="o1", by="bob", reason="seller_not_releasing", appeal="a1")
    refused(
        engine,
        "invalid_state",
        "file_complaint",
        complaint="k1",
        appeal="a1",
        by="bob",
        statement="x",
    )
    do(engine, "start_review", appeal="a1", by="carol")
    do(engine, "resolve_appeal", appeal="a1", by="carol", outcome="release")
    for stranger in ("mallory", "carol", "sam"):
        refused(
            engine,
            "not_authorized",
            "file_complaint",
            complaint="k1",
            appeal="a1",
            by=stranger,
            statement="x",
        )
    refused(
        engine, "not_found", "file_complaint", complaint="k1", appeal="a9", by="bob", statement="x"
    )
    clock.advance(timedelta(days=30) - timedelta(seconds=1))
    file(engine)
    view = engine.complaint("k1")
    assert (view.state, view.complainant, view.resolver, view.overdue) == (
        "filed",
        "alice",
        "carol",
        False,
    )
    assert view.response_deadline == clock.now() + timedelta(days=15)
    refused(
        engine,
        "duplicate_id",
        "file_complaint",
        complaint="k1",
        appeal="a1",
        by="bob",
        statement="x",
    )


def test_E1_after_the_window_or_on_a_withdrawn_appeal(engine: Escrow, clock: ManualClock) -> None:
    resolved_b1(engine)
    clock.advance(timedelta(days=30))
    refused(
        engine,
        "deadline_passed",
        "file_complaint",
        complaint="k1",
        appeal="a1",
        by="alice",
        statement="x",
    )
    do(engine, "create_order", **order_fields("o2"))
    do(engine, "mark_paid", order="o2", by="bob")
    do(engine, "open_appeal", order="o2", by="bob", reason="seller_not_releasing", appeal="a2")
    do(engine, "cancel_appeal", appeal="a2", by="bob")
    refused(
        engine,
        "invalid_state",
        "file_complaint",
        complaint="k2",
        appeal="a2",
        by="bob",
        statement="x",
    )


def test_E2_one_live_complaint_per_appeal_none_after_a_decision(engine: Escrow) -> None:
    resolved_b1(engine)
    file(engine)
    refused(
        engine,
        "invalid_state",
        "file_complaint",
        complaint="k2",
        appeal="a1",
        by="bob",
        statement="x",
    )
    do(engine, "withdraw_complaint", complaint="k1", by="alice")
    file(engine, "k2", by="bob")  # a withdrawn complaint does not count
    do(engine, "start_complaint_review", complaint="k2", by="sam")
    do(engine, "decide_complaint", complaint="k2", by="sam", decision="upheld")
    assert engine.appeal("a1").complaints == ["k1", "k2"]
    refused(
        engine,
        "issue_already_resolved",
        "file_complaint",
        complaint="k3",
        appeal="a1",
        by="alice",
        statement="x",
    )


def test_E3_only_a_supervisor_who_did_not_resolve_the_appeal(engine: Escrow) -> None:
    resolved_b1(engine, resolver="sam")
    file(engine)
    for who in ("sam", "carol", "alice", "bob"):
        refused(engine, "not_authorized", "start_complaint_review", complaint="k1", by=who)
    refused(engine, "not_found", "start_complaint_review", complaint="k9", by="sam")


def test_E3_review_then_decide_upheld(engine: Escrow) -> None:
    resolved_b1(engine)
    file(engine)
    refused(
        engine, "invalid_state", "decide_complaint", complaint="k1", by="sam", decision="upheld"
    )
    do(engine, "start_complaint_review", complaint="k1", by="sam")
    assert engine.allowed("sam", complaint="k1") == ["decide_complaint", "add_complaint_evidence"]
    do(engine, "decide_complaint", complaint="k1", by="sam", decision="upheld")
    view = engine.complaint("k1")
    assert (view.state, view.decision, view.compensation, view.reviewer) == (
        "upheld",
        "upheld",
        None,
        "sam",
    )
    refused(
        engine, "invalid_state", "decide_complaint", complaint="k1", by="sam", decision="overturned"
    )
    assert_order(engine, "completed", "released")


def test_E4_overturned_lifts_the_appeal_sanctions_and_records_compensation(
    engine: Escrow,
) -> None:
    released_then_reversed(engine)
    do(engine, "confirm_reversal", appeal="a1", by="carol", amount="500")
    do(engine, "apply_sanction", trader="bob", by="carol", kind="partial_ban")  # no appeal named
    do(engine, "resolve_appeal", appeal="a1", by="carol")
    file(engine, by="bob")
    do(engine, "start_complaint_review", complaint="k1", by="sam")
    refused(
        engine,
        "amount_exceeds_limit",
        "decide_complaint",
        complaint="k1",
        by="sam",
        decision="overturned",
        compensation="460.01",
    )
    do(
        engine,
        "decide_complaint",
        complaint="k1",
        by="sam",
        decision="overturned",
        compensation="460",
    )
    view = engine.complaint("k1")
    assert (view.state, view.compensation, view.fiat) == ("overturned", 460, "EUR")
    assert_sanctioned(engine, "bob", {"partial_ban"})  # what a1 applied is lifted, only that
    assert_order(engine, "completed", "released")
    assert clawback_figures(engine) == (0, 500, 0, 500, 0)  # CS waives the clawback (K3)


def test_E5_overdue_once_by_tick_and_still_decidable(engine: Escrow, clock: ManualClock) -> None:
    resolved_b1(engine)
    file(engine)
    clock.advance(timedelta(days=15) - timedelta(seconds=1))
    engine.tick()
    assert engine.complaint("k1").overdue is False
    clock.advance(timedelta(seconds=1))
    fired = engine.tick()
    assert [(r.event, r.actor, r.rule) for o in fired for r in o.recorded] == [
        ("MarkedOverdue", "system", "E5")
    ]
    before = event_count(engine)
    clock.advance(timedelta(days=3))
    assert engine.tick() == [] and event_count(engine) == before
    assert engine.complaint("k1").state == "filed"
    do(engine, "start_complaint_review", complaint="k1", by="sam")
    do(engine, "decide_complaint", complaint="k1", by="sam", decision="upheld")
    assert engine.complaint("k1").overdue is True


def test_E5_a_decided_complaint_never_fires(engine: Escrow, clock: ManualClock) -> None:
    resolved_b1(engine)
    file(engine)
    do(engine, "withdraw_complaint", complaint="k1", by="alice")
    clock.advance(timedelta(days=20))
    assert engine.tick() == []
    assert engine.complaint("k1").overdue is False


def test_E6_withdraw_by_the_complainant_evidence_by_parties_and_supervisors(
    engine: Escrow,
) -> None:
    resolved_b1(engine)
    file(engine)
    refused(engine, "not_authorized", "withdraw_complaint", complaint="k1", by="bob")
    refused(engine, "not_authorized", "withdraw_complaint", complaint="k1", by="sam")
    for who in ("alice", "bob", "sam"):
        do(engine, "add_complaint_evidence", complaint="k1", by=who, description="more")
    refused(
        engine,
        "not_authorized",
        "add_complaint_evidence",
        complaint="k1",
        by="carol",
        description="x",
    )
    do(engine, "withdraw_complaint", complaint="k1", by="alice")
    assert engine.complaint("k1").evidence_count == 4  # the statement and three more, kept
    refused(
        engine, "invalid_state", "add_complaint_evidence", complaint="k1", by="bob", description="x"
    )
    refused(engine, "invalid_state", "withdraw_complaint", complaint="k1", by="alice")


# --- settled details ---------------------------------------------------------------------


def test_R3_settled_a_sellers_refund_report_is_not_limited(engine: Escrow) -> None:
    paid_order(engine)
    do(engine, "cancel_order", order="o1", by="bob")
    do(engine, "open_appeal", order="o1", by="bob", reason="cancelled_after_payment", appeal="a1")
    do(engine, "start_review", appeal="a1", by="carol")
    do(engine, "request_refund", appeal="a1", by="carol", amount="460")
    do(engine, "report_refund", appeal="a1", by="alice", amount="9999", reference="wire")
    assert engine.appeal("a1").refunds[-1].reported == 9999


def test_A1_settled_resolving_a_closed_appeal_is_invalid_state_whatever_the_outcome(
    engine: Escrow,
) -> None:
    resolved_b1(engine)
    for outcome in ({}, {"outcome": "release"}, {"outcome": "cancel"}):
        refused(engine, "invalid_state", "resolve_appeal", appeal="a1", by="carol", **outcome)
    do(engine, "create_order", **order_fields("o2"))
    do(engine, "mark_paid", order="o2", by="bob")
    do(engine, "open_appeal", order="o2", by="bob", reason="seller_not_releasing", appeal="a2")
    do(engine, "cancel_appeal", appeal="a2", by="bob")
    for outcome in ({}, {"outcome": "release"}, {"outcome": "cancel"}):
        refused(engine, "invalid_state", "resolve_appeal", appeal="a2", by="carol", **outcome)


# --- read models: the CS queue, trader figures, the ledger; a rebuild gives the same -------


def read_models(engine: Escrow) -> tuple[object, ...]:
    return (
        engine.complaint_queue(),
        engine.appeal_queue(),
        [engine.trader_stats(name) for name in ("alice", "bob")],
        engine.ledgers(),
    )


def test_E5_queue_figures_and_ledger_follow_complaints_and_clawbacks(
    engine: Escrow, clock: ManualClock
) -> None:
    released_then_reversed(engine)
    do(engine, "confirm_reversal", appeal="a1", by="carol", amount="500")
    do(engine, "record_recovery", appeal="a1", by="carol", amount="100")
    do(engine, "resolve_appeal", appeal="a1", by="carol")
    file(engine, by="bob")
    assert engine.appeal_queue() == []  # appeals and complaints are queued apart
    (row,) = engine.complaint_queue()
    assert (row.complaint, row.appeal, row.state, row.waits_on, row.waits_for) == (
        "k1",
        "a1",
        "filed",
        "review",
        "supervisor",
    )
    assert (row.due_at, row.overdue) == (clock.now() + timedelta(days=15), False)
    clock.advance(timedelta(days=15))
    assert engine.complaint_queue(overdue=True)[0].overdue  # due, before any tick
    engine.tick()
    do(engine, "start_complaint_review", complaint="k1", by="sam")
    (row,) = engine.complaint_queue()
    assert (row.state, row.supervisor, row.waits_on, row.overdue) == (
        "under_review",
        "sam",
        "decision",
        True,
    )
    do(engine, "decide_complaint", complaint="k1", by="sam", decision="overturned")
    assert engine.complaint_queue() == []
    bob = engine.trader_stats("bob")
    assert (bob.reversals, bob.complaints_filed, bob.complaints_won) == (1, 1, 1)
    assert engine.trader_stats("alice").reversals == 0
    kept = read_models(engine)
    engine.projector.rebuild()
    assert read_models(engine) == kept
