"""Appeal impact rules (rules.md A1–A9), one or more tests per rule ID.

Each test plays the rule through the embedding API on memory, SQLite and PostgreSQL and checks
what a user would see: order and appeal states, where the crypto went (the order's escrow and
the per-asset ledger), and for refusals the code of scenarios.md (with its precedence when
several apply) and that nothing was stored.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from decimal import Decimal
from typing import Any

from escrow.clock import ManualClock
from escrow.commands.api import Escrow
from escrow.policy import Policy
from tests.helpers import order_fields, paid_order, refused

ZERO = Decimal(0)
AMOUNT = Decimal(500)


def do(engine: Escrow, name: str, **fields: Any) -> None:
    engine.run(name, fields)


def appeal(
    engine: Escrow, reason: str, by: str, ref: str = "a1", order: str = "o1", review: bool = False
) -> None:
    do(engine, "open_appeal", order=order, by=by, reason=reason, appeal=ref)
    if review:
        do(engine, "start_review", appeal=ref, by="carol")


def appeal_refused(
    engine: Escrow, code: str, *, by: str, reason: str, appeal: str = "a2", order: str = "o1"
) -> None:
    """`open_appeal` refused with `code`, storing nothing."""
    refused(engine, code, "open_appeal", order=order, by=by, reason=reason, appeal=appeal)


def completed_order(engine: Escrow, order: str = "o1", **over: Any) -> None:
    paid_order(engine, order, **over)
    do(engine, "release", order=order, by=over.get("seller", "alice"))


def order_state(engine: Escrow, ref: str = "o1") -> tuple[str, str | None]:
    view = engine.order(ref)
    return view.state, view.open_appeal


def appeal_state(engine: Escrow, ref: str = "a1") -> tuple[str, str | None]:
    view = engine.appeal(ref)
    return view.state, view.outcome


def escrow_of(engine: Escrow, ref: str = "o1") -> tuple[Decimal, Decimal]:
    e = engine.order(ref).escrow
    return e.released, e.returned


def ledger(engine: Escrow) -> tuple[Decimal, Decimal, Decimal]:
    view = engine.ledger("USDT")
    return view.in_escrow, view.released, view.returned


# --- A1: resolving an appeal on a live order --------------------------------------------------


def test_A1_resolve_with_release_completes_the_order(engine: Escrow) -> None:
    paid_order(engine)
    appeal(engine, "seller_not_releasing", "bob", review=True)
    outcome = engine.run("resolve_appeal", {"appeal": "a1", "by": "carol", "outcome": "release"})
    assert {(r.stream, r.event, r.rule) for r in outcome.recorded} == {
        ("appeal", "Resolved", "A1"),
        ("order", "AppealResolved", "A1"),
    }
    assert order_state(engine) == ("completed", None)
    assert appeal_state(engine) == ("resolved", "release")
    assert escrow_of(engine) == (AMOUNT, ZERO)
    assert ledger(engine) == (ZERO, AMOUNT, ZERO)


def test_A1_resolve_with_cancel_returns_escrow_to_the_seller(engine: Escrow) -> None:
    paid_order(engine)
    appeal(engine, "seller_payment_method_problem", "bob", review=True)
    do(engine, "resolve_appeal", appeal="a1", by="carol", outcome="cancel")
    assert order_state(engine) == ("cancelled", None)
    assert appeal_state(engine) == ("resolved", "cancel")
    assert escrow_of(engine) == (ZERO, AMOUNT)
    assert ledger(engine) == (ZERO, ZERO, AMOUNT)


def test_A1_verbal_abuse_resolved_without_outcome_returns_the_order_to_paid(
    engine: Escrow,
) -> None:
    paid_order(engine)
    for opener in ("bob", "alice"):  # B5 then C5
        appeal(engine, "verbal_abuse", opener, ref=f"va-{opener}", review=True)
        assert order_state(engine) == ("in_appeal", f"va-{opener}")
        do(engine, "resolve_appeal", appeal=f"va-{opener}", by="carol")
        assert appeal_state(engine, f"va-{opener}") == ("resolved", "none")
        assert order_state(engine) == ("paid", None)
        assert ledger(engine) == (AMOUNT, ZERO, ZERO)
    do(engine, "release", order="o1", by="alice")  # the trade goes on to its end
    assert ledger(engine) == (ZERO, AMOUNT, ZERO)


def test_A1_verbal_abuse_may_also_be_resolved_with_an_outcome(engine: Escrow) -> None:
    paid_order(engine)
    appeal(engine, "verbal_abuse", "alice", review=True)
    do(engine, "resolve_appeal", appeal="a1", by="carol", outcome="release")
    assert order_state(engine) == ("completed", None)
    assert ledger(engine) == (ZERO, AMOUNT, ZERO)


def test_A1_outcome_is_required_on_a_live_order_but_for_verbal_abuse(engine: Escrow) -> None:
    paid_order(engine)
    appeal(engine, "seller_not_releasing", "bob", review=True)
    refused(engine, "validation_error", "resolve_appeal", appeal="a1", by="carol")
    assert order_state(engine) == ("in_appeal", "a1")
    assert appeal_state(engine) == ("under_review", None)


def test_A1_missing_outcome_is_validation_error_before_authorization_and_state(
    engine: Escrow,
) -> None:
    paid_order(engine)
    appeal(engine, "seller_not_releasing", "bob")  # open, not yet under review
    refused(engine, "validation_error", "resolve_appeal", appeal="a1", by="carol")
    refused(engine, "validation_error", "resolve_appeal", appeal="a1", by="bob")


# --- A2: appeals on terminal orders -----------------------------------------------------------


def test_A2_appeal_on_a_completed_order_never_moves_it(engine: Escrow) -> None:
    completed_order(engine)
    appeal(engine, "amount_mismatch", "bob")
    assert order_state(engine) == ("completed", "a1")
    assert appeal_state(engine) == ("open", None)
    do(engine, "start_review", appeal="a1", by="carol")
    do(engine, "resolve_appeal", appeal="a1", by="carol")
    assert appeal_state(engine) == ("resolved", "none")
    assert order_state(engine) == ("completed", None)
    assert escrow_of(engine) == (AMOUNT, ZERO)
    assert ledger(engine) == (ZERO, AMOUNT, ZERO)


def test_A2_appeal_on_a_cancelled_order_keeps_it_cancelled(engine: Escrow) -> None:
    paid_order(engine)
    do(engine, "cancel_order", order="o1", by="bob")
    appeal(engine, "cancelled_after_payment", "bob", review=True)
    assert order_state(engine) == ("cancelled", "a1")
    do(engine, "resolve_appeal", appeal="a1", by="carol")
    assert order_state(engine) == ("cancelled", None)
    assert appeal_state(engine) == ("resolved", "none")
    assert ledger(engine) == (ZERO, ZERO, AMOUNT)


def test_A2_cancelling_an_appeal_on_a_terminal_order_keeps_its_state(engine: Escrow) -> None:
    completed_order(engine)
    appeal(engine, "payment_not_received", "alice", review=True)
    do(engine, "cancel_appeal", appeal="a1", by="alice")
    assert order_state(engine) == ("completed", None)
    assert appeal_state(engine) == ("cancelled", None)
    assert ledger(engine) == (ZERO, AMOUNT, ZERO)


def test_A2_an_outcome_for_a_terminal_order_is_validation_error(engine: Escrow) -> None:
    completed_order(engine)
    appeal(engine, "seller_not_releasing", "bob", review=True)
    for outcome in ("release", "cancel"):
        refused(
            engine, "validation_error", "resolve_appeal", appeal="a1", by="carol", outcome=outcome
        )
        # validation_error is checked before not_authorized (scenarios.md precedence)
        refused(
            engine, "validation_error", "resolve_appeal", appeal="a1", by="bob", outcome=outcome
        )
    assert order_state(engine) == ("completed", "a1")
    assert appeal_state(engine) == ("under_review", None)


# --- A3: a resolved issue stays resolved ------------------------------------------------------


def test_A3_same_reason_after_resolution_is_refused(engine: Escrow) -> None:
    paid_order(engine)
    appeal(engine, "seller_not_releasing", "bob", review=True)
    do(engine, "resolve_appeal", appeal="a1", by="carol", outcome="release")
    appeal_refused(engine, "issue_already_resolved", by="bob", reason="seller_not_releasing")
    appeal(engine, "amount_mismatch", "bob", ref="a3")  # another issue is still open to appeal
    assert order_state(engine) == ("completed", "a3")


def test_A3_a_seller_issue_stays_resolved_too(engine: Escrow) -> None:
    paid_order(engine)
    appeal(engine, "non_real_name_payment", "alice", review=True)
    do(engine, "add_evidence", appeal="a1", by="alice", description="I accept the payment")
    do(engine, "resolve_appeal", appeal="a1", by="carol", outcome="release")
    appeal_refused(engine, "issue_already_resolved", by="alice", reason="non_real_name_payment")


def test_A3_verbal_abuse_issue_is_per_reporting_trader(engine: Escrow) -> None:
    paid_order(engine)
    appeal(engine, "verbal_abuse", "bob", review=True)
    do(engine, "resolve_appeal", appeal="a1", by="carol")
    appeal_refused(engine, "issue_already_resolved", by="bob", reason="verbal_abuse")
    appeal(engine, "verbal_abuse", "alice", ref="a3", review=True)  # the seller keeps hers
    do(engine, "resolve_appeal", appeal="a3", by="carol")
    appeal_refused(engine, "issue_already_resolved", by="alice", reason="verbal_abuse", appeal="a4")
    assert order_state(engine) == ("paid", None)


def test_A3_a_resolved_issue_stays_resolved_after_the_order_closes(
    engine: Escrow, clock: ManualClock
) -> None:
    paid_order(engine)
    appeal(engine, "verbal_abuse", "bob", review=True)
    do(engine, "resolve_appeal", appeal="a1", by="carol")
    do(engine, "release", order="o1", by="alice")
    clock.advance(timedelta(days=1))
    appeal_refused(engine, "issue_already_resolved", by="bob", reason="verbal_abuse")


# --- A4: a cancelled appeal does not close the issue ------------------------------------------


def test_A4_after_cancelling_the_same_reason_may_be_appealed_again(engine: Escrow) -> None:
    paid_order(engine)
    appeal(engine, "seller_not_releasing", "bob", review=True)
    do(engine, "cancel_appeal", appeal="a1", by="bob")
    assert appeal_state(engine) == ("cancelled", None)
    assert order_state(engine) == ("paid", None)
    appeal(engine, "seller_not_releasing", "bob", ref="a2", review=True)
    assert order_state(engine) == ("in_appeal", "a2")
    assert engine.order("o1").appeals == ["a1", "a2"]
    do(engine, "resolve_appeal", appeal="a2", by="carol", outcome="release")
    assert order_state(engine) == ("completed", None)
    assert ledger(engine) == (ZERO, AMOUNT, ZERO)


def test_A4_a_cancelled_appeal_id_cannot_be_reused(engine: Escrow) -> None:
    paid_order(engine)
    appeal(engine, "seller_not_releasing", "bob")
    do(engine, "cancel_appeal", appeal="a1", by="bob")
    appeal_refused(engine, "duplicate_id", by="bob", reason="seller_not_releasing", appeal="a1")
    assert appeal_state(engine) == ("cancelled", None)


# --- A5: no release while an appeal is open ---------------------------------------------------


def _appeal_in_each_live_state(engine: Escrow) -> dict[str, str]:
    """One order per non-terminal appeal state; returns order ref -> appeal state."""
    paid_order(engine, "o-open")
    appeal(engine, "seller_not_releasing", "bob", ref="a-open", order="o-open")
    paid_order(engine, "o-review")
    appeal(engine, "verbal_abuse", "alice", ref="a-review", order="o-review", review=True)
    paid_order(engine, "o-refund", paid_amount="500")
    appeal(engine, "amount_mismatch", "bob", ref="a-refund", order="o-refund", review=True)
    do(engine, "request_refund", appeal="a-refund", by="carol", amount="40")
    paid_order(engine, "o-proof", instant=False)
    appeal(engine, "payment_not_received", "alice", ref="a-proof", order="o-proof", review=True)
    do(engine, "request_payment_proof", appeal="a-proof", by="carol")
    paid_order(engine, "o-topup", paid_amount="400")
    appeal(engine, "insufficient_payment", "alice", ref="a-topup", order="o-topup", review=True)
    do(engine, "agree_top_up", appeal="a-topup", by="bob")
    paid_order(engine, "o-freeze")
    appeal(engine, "bank_account_frozen", "alice", ref="a-freeze", order="o-freeze")
    return {
        f"o-{s}": engine.appeal(f"a-{s}").state
        for s in ("open", "review", "refund", "proof", "topup", "freeze")
    }


def test_A5_the_seller_cannot_release_in_any_open_appeal_state(engine: Escrow) -> None:
    states = _appeal_in_each_live_state(engine)
    assert sorted(states.values()) == sorted(
        [
            "open",
            "under_review",
            "awaiting_refund",
            "awaiting_payment_proof",
            "awaiting_top_up",
            "awaiting_freeze_proof",
        ]
    )
    for order in states:
        refused(engine, "release_blocked_by_appeal", "release", order=order, by="alice")
        assert engine.order(order).state == "in_appeal"
    assert ledger(engine) == (6 * AMOUNT, ZERO, ZERO)


def test_A5_release_is_possible_again_once_the_appeal_is_cancelled(engine: Escrow) -> None:
    paid_order(engine)
    appeal(engine, "payment_not_received", "alice", review=True)
    refused(engine, "release_blocked_by_appeal", "release", order="o1", by="alice")
    do(engine, "cancel_appeal", appeal="a1", by="alice")
    do(engine, "release", order="o1", by="alice")
    assert order_state(engine) == ("completed", None)
    assert ledger(engine) == (ZERO, AMOUNT, ZERO)


def test_A5_a_party_releasing_during_an_appeal_is_not_authorized_first(engine: Escrow) -> None:
    paid_order(engine)
    appeal(engine, "seller_not_releasing", "bob")
    # not_authorized (O6) is checked before release_blocked_by_appeal (A5)
    for actor in ("bob", "carol", "mallory"):
        refused(engine, "not_authorized", "release", order="o1", by=actor)
    refused(engine, "release_blocked_by_appeal", "release", order="o1", by="alice")


# --- A6: when and by whom an appeal may be opened ---------------------------------------------


def test_A6_no_appeal_while_awaiting_payment(engine: Escrow) -> None:
    do(engine, "create_order", **order_fields("o1"))
    for by, reason in [("bob", "seller_not_releasing"), ("alice", "payment_not_received")]:
        appeal_refused(engine, "appeal_not_allowed", by=by, reason=reason, appeal="a1")
    # who may appeal is checked before when: not_authorized wins over appeal_not_allowed
    for by, reason in [
        ("mallory", "verbal_abuse"),
        ("carol", "verbal_abuse"),
        ("bob", "payment_not_received"),
    ]:
        refused(
            engine, "not_authorized", "open_appeal", order="o1", by=by, reason=reason, appeal="a1"
        )
    assert order_state(engine) == ("awaiting_payment", None)
    assert engine.trader("bob").can_trade


def test_A6_opening_moves_a_paid_order_to_in_appeal_and_cancelling_back(engine: Escrow) -> None:
    paid_order(engine)
    outcome = engine.run(
        "open_appeal",
        {"order": "o1", "by": "alice", "reason": "payment_not_received", "appeal": "a1"},
    )
    assert {(r.stream, r.event, r.rule) for r in outcome.recorded} == {
        ("appeal", "Opened", "C1"),
        ("order", "AppealOpened", "A6"),
    }
    assert order_state(engine) == ("in_appeal", "a1")
    view = engine.appeal("a1")
    assert (view.state, view.opener, view.side, view.reason) == (
        "open",
        "alice",
        "seller",
        "payment_not_received",
    )
    do(engine, "cancel_appeal", appeal="a1", by="alice")
    assert order_state(engine) == ("paid", None)
    assert ledger(engine) == (AMOUNT, ZERO, ZERO)


def test_A6_a_party_opens_only_its_own_sides_reasons(engine: Escrow) -> None:
    paid_order(engine)
    for reason in (
        "payment_not_received",
        "insufficient_payment",
        "non_real_name_payment",
        "bank_account_frozen",
    ):
        appeal_refused(engine, "not_authorized", by="bob", reason=reason, appeal="a1")
    for reason in (
        "seller_not_releasing",
        "cancelled_after_payment",
        "amount_mismatch",
        "seller_payment_method_problem",
    ):
        appeal_refused(engine, "not_authorized", by="alice", reason=reason, appeal="a1")
    assert order_state(engine) == ("paid", None)
    assert engine.trader("bob").can_trade  # the refused C4 applied no S2


def test_A6_agents_and_strangers_cannot_open_appeals(engine: Escrow) -> None:
    paid_order(engine)
    for actor in ("carol", "mallory"):
        appeal_refused(engine, "not_authorized", by=actor, reason="verbal_abuse", appeal="a1")


def test_A6_appeal_window_after_close_counts_from_closing(
    engine: Escrow, clock: ManualClock
) -> None:
    paid_order(engine)
    clock.advance(timedelta(days=50))
    do(engine, "release", order="o1", by="alice")
    closed = engine.order("o1").closed_at
    assert closed == clock.now()
    clock.advance(timedelta(days=60) - timedelta(seconds=1))
    appeal(engine, "amount_mismatch", "bob")  # 110 days after creation, 1 s before the end
    assert order_state(engine) == ("completed", "a1")


def test_A6_no_appeal_once_the_window_after_close_has_passed(
    engine: Escrow, clock: ManualClock
) -> None:
    paid_order(engine)
    do(engine, "cancel_order", order="o1", by="bob")
    clock.advance(timedelta(days=60))
    for by, reason in [("bob", "cancelled_after_payment"), ("alice", "verbal_abuse")]:
        appeal_refused(engine, "appeal_not_allowed", by=by, reason=reason, appeal="a1")
    assert order_state(engine) == ("cancelled", None)


def test_A6_appeal_window_follows_the_policy(
    make_engine: Callable[..., Escrow], clock: ManualClock
) -> None:
    engine = make_engine(Policy(appeal_window_after_close=timedelta(days=1)))
    completed_order(engine)
    clock.advance(timedelta(hours=23))
    appeal(engine, "verbal_abuse", "bob")
    do(engine, "cancel_appeal", appeal="a1", by="bob")
    clock.advance(timedelta(hours=1))
    appeal_refused(engine, "appeal_not_allowed", by="alice", reason="verbal_abuse")


# --- A7: one open appeal per order ------------------------------------------------------------


def test_A7_a_second_appeal_while_one_is_open_is_refused(engine: Escrow) -> None:
    paid_order(engine)
    appeal(engine, "seller_not_releasing", "bob", review=True)
    for by, reason in [
        ("alice", "payment_not_received"),
        ("bob", "amount_mismatch"),
        ("alice", "verbal_abuse"),
    ]:
        appeal_refused(engine, "appeal_already_open", by=by, reason=reason)
    # the other party adds evidence to the open appeal instead
    do(engine, "add_evidence", appeal="a1", by="alice", description="buyer paid 100 EUR short")
    assert engine.appeal("a1").evidence_count == 1
    assert order_state(engine) == ("in_appeal", "a1")


def test_A7_also_on_a_terminal_order(engine: Escrow) -> None:
    completed_order(engine)
    appeal(engine, "amount_mismatch", "bob")
    appeal_refused(engine, "appeal_already_open", by="alice", reason="verbal_abuse")
    do(engine, "cancel_appeal", appeal="a1", by="bob")
    appeal(engine, "verbal_abuse", "alice", ref="a2")
    assert order_state(engine) == ("completed", "a2")


def test_A7_before_A3_before_A6(engine: Escrow, clock: ManualClock) -> None:
    completed_order(engine)
    appeal(engine, "verbal_abuse", "bob", review=True)
    do(engine, "resolve_appeal", appeal="a1", by="carol")  # bob's abuse issue resolved (A2)
    appeal(engine, "verbal_abuse", "alice", ref="a2")  # open, within the window
    clock.advance(timedelta(days=61))  # the appeal window has passed too
    again = {"order": "o1", "by": "bob", "reason": "verbal_abuse", "appeal": "a3"}
    refused(engine, "appeal_already_open", "open_appeal", **again)  # A7, A3 and A6 apply
    do(engine, "cancel_appeal", appeal="a2", by="alice")
    refused(engine, "issue_already_resolved", "open_appeal", **again)  # A3 and A6 apply
    refused(engine, "appeal_not_allowed", "open_appeal", **dict(again, reason="amount_mismatch"))


def test_A7_on_a_paid_order_before_A3(engine: Escrow) -> None:
    paid_order(engine)
    appeal(engine, "verbal_abuse", "bob", review=True)
    do(engine, "resolve_appeal", appeal="a1", by="carol")
    appeal(engine, "payment_not_received", "alice", ref="a2")
    appeal_refused(engine, "appeal_already_open", by="bob", reason="verbal_abuse", appeal="a3")


def test_A7_identity_and_authorization_come_first(engine: Escrow) -> None:
    paid_order(engine)
    appeal(engine, "seller_not_releasing", "bob")
    # the other side's reason: not_authorized before appeal_already_open
    appeal_refused(engine, "not_authorized", by="bob", reason="payment_not_received")
    # an existing appeal id: duplicate_id before not_authorized
    appeal_refused(engine, "duplicate_id", by="mallory", reason="verbal_abuse", appeal="a1")
    appeal_refused(engine, "not_found", by="bob", reason="verbal_abuse", appeal="a1", order="nope")


# --- A8: evidence -----------------------------------------------------------------------------


def test_A8_both_parties_and_cs_attach_evidence(engine: Escrow) -> None:
    paid_order(engine)
    appeal(engine, "seller_not_releasing", "bob")
    for by, refs in [("bob", ["tx-1", "file:receipt.pdf"]), ("alice", []), ("carol", ["note-7"])]:
        outcome = engine.run(
            "add_evidence", {"appeal": "a1", "by": by, "description": f"from {by}", "refs": refs}
        )
        assert [(r.event, r.rule, r.actor) for r in outcome.recorded] == [
            ("EvidenceAdded", "A8", by)
        ]
    view = engine.appeal("a1")
    assert (view.state, view.evidence_count) == ("open", 3)
    assert order_state(engine) == ("in_appeal", "a1")


def test_A8_evidence_in_every_live_state(engine: Escrow) -> None:
    states = _appeal_in_each_live_state(engine)
    for order in states:
        ref = "a-" + order.removeprefix("o-")
        do(engine, "add_evidence", appeal=ref, by="carol", description="checked")
        assert engine.appeal(ref).state == states[order]  # evidence does not move the appeal
        assert engine.appeal(ref).evidence_count == 1


def test_A8_a_stranger_cannot_attach_evidence(engine: Escrow) -> None:
    paid_order(engine)
    appeal(engine, "seller_not_releasing", "bob")
    refused(engine, "not_authorized", "add_evidence", appeal="a1", by="mallory", description="x")
    assert engine.appeal("a1").evidence_count == 0


def test_A8_evidence_is_kept_after_the_appeal_closes(engine: Escrow) -> None:
    paid_order(engine)
    appeal(engine, "seller_not_releasing", "bob", review=True)
    do(engine, "add_evidence", appeal="a1", by="bob", description="bank statement", refs=["f1"])
    do(engine, "add_evidence", appeal="a1", by="alice", description="nothing received")
    do(engine, "resolve_appeal", appeal="a1", by="carol", outcome="release")
    assert engine.appeal("a1").evidence_count == 2
    refused(engine, "invalid_state", "add_evidence", appeal="a1", by="bob", description="late")
    appeal(engine, "amount_mismatch", "bob", ref="a2")
    do(engine, "cancel_appeal", appeal="a2", by="bob")
    refused(engine, "invalid_state", "add_evidence", appeal="a2", by="carol", description="late")
    assert engine.appeal("a1").evidence_count == 2


# --- A9: who may do what on an appeal ---------------------------------------------------------


def test_A9_only_the_opener_cancels_an_appeal(engine: Escrow) -> None:
    paid_order(engine)
    appeal(engine, "payment_not_received", "alice", review=True)
    for actor in ("bob", "carol", "mallory"):
        refused(engine, "not_authorized", "cancel_appeal", appeal="a1", by=actor)
    assert appeal_state(engine) == ("under_review", None)
    do(engine, "cancel_appeal", appeal="a1", by="alice")
    assert appeal_state(engine) == ("cancelled", None)
    refused(engine, "invalid_state", "cancel_appeal", appeal="a1", by="alice")


def test_A9_only_cs_moves_an_appeal_through_review(engine: Escrow) -> None:
    paid_order(engine, paid_amount="500", instant=False)
    appeal(engine, "amount_mismatch", "bob")
    for actor in ("bob", "alice", "mallory"):
        refused(engine, "not_authorized", "start_review", appeal="a1", by=actor)
    do(engine, "start_review", appeal="a1", by="carol")
    assert engine.appeal("a1").agent == "carol"
    for actor in ("bob", "alice"):
        refused(engine, "not_authorized", "request_refund", appeal="a1", by=actor, amount="40")
        refused(engine, "not_authorized", "request_payment_proof", appeal="a1", by=actor)
        refused(
            engine, "not_authorized", "resolve_appeal", appeal="a1", by=actor, outcome="release"
        )
        refused(
            engine,
            "not_authorized",
            "apply_sanction",
            trader="alice",
            by=actor,
            kind="partial_ban",
            appeal="a1",
        )
    assert appeal_state(engine) == ("under_review", None)
    assert engine.trader("alice").can_trade
    do(engine, "resolve_appeal", appeal="a1", by="dave", outcome="release")  # any agent may
    assert appeal_state(engine) == ("resolved", "release")
    assert ledger(engine) == (ZERO, AMOUNT, ZERO)


def test_A9_not_authorized_comes_before_invalid_state(engine: Escrow) -> None:
    paid_order(engine)
    appeal(engine, "seller_not_releasing", "bob")
    # still open (not under review): a party resolving is refused for who it is
    refused(engine, "not_authorized", "resolve_appeal", appeal="a1", by="bob", outcome="release")
    do(engine, "start_review", appeal="a1", by="carol")
    do(engine, "resolve_appeal", appeal="a1", by="carol", outcome="release")
    refused(engine, "not_authorized", "start_review", appeal="a1", by="alice")
    refused(engine, "not_authorized", "cancel_appeal", appeal="a1", by="alice")
    refused(engine, "invalid_state", "start_review", appeal="a1", by="carol")
    # a second resolution of a closed appeal: it is resolved (invalid_state), whatever outcome
    for outcome in ("release", "cancel", None):
        extra = {} if outcome is None else {"outcome": outcome}
        refused(engine, "invalid_state", "resolve_appeal", appeal="a1", by="dave", **extra)
        refused(engine, "not_authorized", "resolve_appeal", appeal="a1", by="bob", **extra)
    assert appeal_state(engine) == ("resolved", "release")
