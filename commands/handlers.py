"""One small handler per command: load, ask the aggregates, let them record.

Handlers never save and never touch read models: the engine saves what the unit changed in
one transaction, and projections follow the log.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from escrow.actors import Actor
from escrow.appeal import Appeal
from escrow.commands.models import (
    AddComplaintEvidence,
    AddEvidence,
    AgreeTopUp,
    ApplySanction,
    CancelAppeal,
    CancelOrder,
    Command,
    ConfirmRefund,
    ConfirmReversal,
    ConfirmTopUp,
    CreateOrder,
    DecideComplaint,
    FileComplaint,
    LiftSanction,
    MarkPaid,
    OpenAppeal,
    RecordRecovery,
    RefuseRefund,
    RefuseTopUp,
    Release,
    ReportRefund,
    RequestPaymentProof,
    RequestRefund,
    ResolveAppeal,
    StartComplaintReview,
    StartReview,
    SubmitFreezeProof,
    SubmitPaymentProof,
    WaiveClawback,
    WithdrawComplaint,
)
from escrow.commands.system import (
    CloseFreezeWindow,
    ExpirePaymentProof,
    ExpirePaymentWindow,
    ExpireSanctions,
    MarkComplaintOverdue,
)
from escrow.commands.unit import Unit
from escrow.complaint import Complaint
from escrow.consequences import (
    close_complaint,
    refunds_requested,
    reversal_confirmed,
    suspend_buyer_on_opening,
    suspend_seller_on_refused_refund,
)
from escrow.errors import (
    DuplicateId,
    EscrowError,
    NotAuthorized,
    NotFound,
    TraderSuspended,
    ValidationError,
)
from escrow.order import Order
from escrow.trader import Trader
from escrow.vocabulary import SYSTEM

Handler = Callable[[Unit, Any], None]


def create_order(u: Unit, c: CreateOrder) -> None:
    """O1, O7. The id is checked only when the order would be refused or a save clashed:
    a new order's stream cannot be written twice, so a duplicate id shows up as a version
    clash on save, and the retry then reports it (one read fewer on every order created)."""
    if c.seller == c.buyer:
        raise ValidationError("buyer and seller must differ", "O1")
    problem = _party_problem(u, c)
    if (problem is not None or u.attempt > 0) and u.find(Order, c.order) is not None:
        raise DuplicateId(f"order {c.order!r} already exists")
    if problem is not None:
        raise problem
    u.add(
        Order.create(
            ref=c.order,
            seller=c.seller,
            buyer=c.buyer,
            asset=c.asset,
            amount=c.amount,
            price=c.price,
            fiat=c.fiat,
            payment_method=c.payment_method,
            instant=c.instant,
            reference_price=c.reference_price or c.price,
            payment_window=c.payment_window or u.policy.payment_window,
            policy=u.policy,
            at=u.now,
        )
    )


def _party_problem(u: Unit, c: CreateOrder) -> EscrowError | None:
    for party in (c.seller, c.buyer):
        if party in u.agents or party == SYSTEM:
            return NotAuthorized(f"{party} is a customer-service agent, not a trader", "O1")
    parties = [c.seller, c.buyer]
    for party, trader in zip(parties, u.find_all(Trader, parties), strict=True):
        if trader is not None and not trader.can_trade(u.now):
            return TraderSuspended(f"{party} is under a sanction that blocks new orders", "O7")
    return None


def mark_paid(u: Unit, c: MarkPaid) -> None:
    u.order(c.order).mark_paid(u.actor(c.by), c.paid_amount, u.now)


def cancel_order(u: Unit, c: CancelOrder) -> None:
    u.order(c.order).cancel(u.actor(c.by), u.now)


def release(u: Unit, c: Release) -> None:
    u.order(c.order).release(u.actor(c.by), u.now)


def open_appeal(u: Unit, c: OpenAppeal) -> None:
    order = u.order(c.order)
    if u.find(Appeal, c.appeal) is not None:
        raise DuplicateId(f"appeal {c.appeal!r} already exists")
    by = u.actor(c.by)
    appeal = u.add(
        Appeal.open(
            ref=c.appeal,
            order=order,
            by=by,
            reason=c.reason,
            description=c.description,
            policy=u.policy,
            at=u.now,
        )
    )
    order.appeal_opened(appeal.ref, by, appeal.issue, appeal.reason, u.now)
    suspend_buyer_on_opening(appeal, lambda: u.trader(order.buyer), by, u.policy, u.now)


def _appeal_and_order(u: Unit, ref: str) -> tuple[Appeal, Order]:
    appeal = u.appeal(ref)
    return appeal, u.order(appeal.order)


def add_evidence(u: Unit, c: AddEvidence) -> None:
    appeal, order = _appeal_and_order(u, c.appeal)
    appeal.add_evidence(u.actor(c.by), c.description, list(c.refs), order, u.now)


def cancel_appeal(u: Unit, c: CancelAppeal) -> None:
    appeal, order = _appeal_and_order(u, c.appeal)
    by = u.actor(c.by)
    appeal.cancel(by, order, u.now)
    order.appeal_cancelled(appeal.ref, by, u.now)


def start_review(u: Unit, c: StartReview) -> None:
    appeal, order = _appeal_and_order(u, c.appeal)
    appeal.start_review(u.actor(c.by), order, u.now)


def request_refund(u: Unit, c: RequestRefund) -> None:
    appeal, order = _appeal_and_order(u, c.appeal)
    others = (u.find(Appeal, ref) for ref in order.appeals if ref != appeal.ref)
    total = refunds_requested(appeal, others)
    appeal.request_refund(u.actor(c.by), c.amount, c.note, order, total, u.now)


def report_refund(u: Unit, c: ReportRefund) -> None:
    appeal, order = _appeal_and_order(u, c.appeal)
    appeal.report_refund(u.actor(c.by), c.amount, c.reference, order, u.now)


def confirm_refund(u: Unit, c: ConfirmRefund) -> None:
    appeal, order = _appeal_and_order(u, c.appeal)
    appeal.confirm_refund(u.actor(c.by), order, u.now)


def refuse_refund(u: Unit, c: RefuseRefund) -> None:
    appeal, order = _appeal_and_order(u, c.appeal)
    by = u.actor(c.by)
    appeal.refuse_refund(by, order, u.now)
    suspend_seller_on_refused_refund(appeal, u.trader(order.seller), by, u.policy, u.now)


def request_payment_proof(u: Unit, c: RequestPaymentProof) -> None:
    appeal, order = _appeal_and_order(u, c.appeal)
    appeal.request_payment_proof(u.actor(c.by), order, u.policy, u.now)


def submit_payment_proof(u: Unit, c: SubmitPaymentProof) -> None:
    appeal, order = _appeal_and_order(u, c.appeal)
    appeal.submit_payment_proof(u.actor(c.by), list(c.refs), order, u.now)


def agree_top_up(u: Unit, c: AgreeTopUp) -> None:
    appeal, order = _appeal_and_order(u, c.appeal)
    appeal.agree_top_up(u.actor(c.by), order, u.now)


def refuse_top_up(u: Unit, c: RefuseTopUp) -> None:
    appeal, order = _appeal_and_order(u, c.appeal)
    appeal.refuse_top_up(u.actor(c.by), order, u.now)


def confirm_top_up(u: Unit, c: ConfirmTopUp) -> None:
    appeal, order = _appeal_and_order(u, c.appeal)
    by = u.actor(c.by)
    amount = appeal.confirm_top_up(by, c.amount, order, u.now)
    order.top_up_confirmed(appeal.ref, amount, by, u.now)


def submit_freeze_proof(u: Unit, c: SubmitFreezeProof) -> None:
    appeal, order = _appeal_and_order(u, c.appeal)
    appeal.submit_freeze_proof(u.actor(c.by), list(c.refs), order, u.now)


def _agent(u: Unit, name: str, what: str) -> None:
    if not u.actor(name).is_agent:
        raise NotAuthorized(f"only a customer-service agent may {what}", "A9")


def apply_sanction(u: Unit, c: ApplySanction) -> None:
    if c.trader in u.agents:
        raise ValidationError(f"{c.trader} is an agent, not a trader")
    if c.appeal is not None and u.find(Appeal, c.appeal) is None:
        raise NotFound(f"no appeal {c.appeal!r}")
    _agent(u, c.by, "apply a sanction")
    u.trader(c.trader).sanction(
        c.kind, by=u.actor(c.by), at=u.now, policy=u.policy, severity=c.severity, appeal=c.appeal
    )


def lift_sanction(u: Unit, c: LiftSanction) -> None:
    _agent(u, c.by, "lift a sanction")
    u.trader(c.trader).lift(c.kind, u.actor(c.by), u.now)


def resolve_appeal(u: Unit, c: ResolveAppeal) -> None:
    appeal, order = _appeal_and_order(u, c.appeal)
    by = u.actor(c.by)
    outcome = appeal.resolve(by, c.outcome, order, u.now)
    order.appeal_resolved(appeal.ref, appeal.issue, outcome, by, u.now)


# --- after the trade: reversals (C6, K1–K3) and complaints (E1–E6) -------------------------


def confirm_reversal(u: Unit, c: ConfirmReversal) -> None:
    appeal, order = _appeal_and_order(u, c.appeal)
    buyer = lambda: u.trader(order.buyer)  # noqa: E731 (loaded only once the reversal holds)
    reversal_confirmed(appeal, order, buyer, c.amount, u.actor(c.by), u.policy, u.now)


def record_recovery(u: Unit, c: RecordRecovery) -> None:
    appeal, order = _appeal_and_order(u, c.appeal)
    appeal.record_recovery(u.actor(c.by), c.amount, order, u.now)


def waive_clawback(u: Unit, c: WaiveClawback) -> None:
    appeal, order = _appeal_and_order(u, c.appeal)
    appeal.waive_clawback(u.actor(c.by), order, u.now)


def file_complaint(u: Unit, c: FileComplaint) -> None:
    appeal, order = _appeal_and_order(u, c.appeal)
    if u.find(Complaint, c.complaint) is not None:
        raise DuplicateId(f"complaint {c.complaint!r} already exists")
    by = u.actor(c.by)
    window_end = None if appeal.closed_at is None else appeal.closed_at + u.policy.complaint_window
    appeal.complaint_filed(c.complaint, by, order, window_end, u.now)
    u.add(
        Complaint.file(
            ref=c.complaint,
            appeal=appeal,
            order=order,
            by=by,
            statement=c.statement,
            refs=list(c.refs),
            response_deadline=u.now + u.policy.complaint_response_deadline,
            at=u.now,
        )
    )


def start_complaint_review(u: Unit, c: StartComplaintReview) -> None:
    u.complaint(c.complaint).start_review(u.actor(c.by), u.now)


def _close(u: Unit, complaint: Complaint, by: Actor) -> None:
    """E2/E4 on the appeal and the complainant, in the same transaction as the complaint."""
    complainant = u.find(Trader, complaint.complainant)
    if complainant is not None:
        u.touch(complainant)
    close_complaint(complaint, u.appeal(complaint.appeal), complainant, by, u.now)


def decide_complaint(u: Unit, c: DecideComplaint) -> None:
    complaint = u.complaint(c.complaint)
    by = u.actor(c.by)
    complaint.decide(by, c.decision, c.compensation, u.now)
    _close(u, complaint, by)


def withdraw_complaint(u: Unit, c: WithdrawComplaint) -> None:
    complaint = u.complaint(c.complaint)
    by = u.actor(c.by)
    complaint.withdraw(by, u.now)
    _close(u, complaint, by)


def add_complaint_evidence(u: Unit, c: AddComplaintEvidence) -> None:
    u.complaint(c.complaint).add_evidence(u.actor(c.by), c.description, list(c.refs), u.now)


# --- deadlines, fired by `tick` as system commands ------------------------------------------


def expire_payment_window(u: Unit, c: ExpirePaymentWindow) -> None:
    u.order(c.order).expire(u.actor(SYSTEM), u.now)


def expire_payment_proof(u: Unit, c: ExpirePaymentProof) -> None:
    appeal, order = _appeal_and_order(u, c.appeal)
    system = u.actor(SYSTEM)
    outcome = appeal.expire_payment_proof(system, order, u.now)
    order.appeal_resolved(appeal.ref, appeal.issue, outcome, system, u.now)


def close_freeze_window(u: Unit, c: CloseFreezeWindow) -> None:
    appeal, order = _appeal_and_order(u, c.appeal)
    appeal.close_freeze_window(u.actor(SYSTEM), order, u.now)


def expire_sanctions(u: Unit, c: ExpireSanctions) -> None:
    u.get(Trader, c.trader).expire_due(u.actor(SYSTEM), u.now)


def mark_complaint_overdue(u: Unit, c: MarkComplaintOverdue) -> None:
    u.complaint(c.complaint).mark_overdue(u.actor(SYSTEM), u.now)


HANDLERS: dict[type[Command], Handler] = {
    CreateOrder: create_order,
    MarkPaid: mark_paid,
    CancelOrder: cancel_order,
    Release: release,
    OpenAppeal: open_appeal,
    AddEvidence: add_evidence,
    CancelAppeal: cancel_appeal,
    StartReview: start_review,
    RequestRefund: request_refund,
    ReportRefund: report_refund,
    ConfirmRefund: confirm_refund,
    RefuseRefund: refuse_refund,
    RequestPaymentProof: request_payment_proof,
    SubmitPaymentProof: submit_payment_proof,
    AgreeTopUp: agree_top_up,
    RefuseTopUp: refuse_top_up,
    ConfirmTopUp: confirm_top_up,
    SubmitFreezeProof: submit_freeze_proof,
    ApplySanction: apply_sanction,
    LiftSanction: lift_sanction,
    ResolveAppeal: resolve_appeal,
    ConfirmReversal: confirm_reversal,
    RecordRecovery: record_recovery,
    WaiveClawback: waive_clawback,
    FileComplaint: file_complaint,
    StartComplaintReview: start_complaint_review,
    DecideComplaint: decide_complaint,
    WithdrawComplaint: withdraw_complaint,
    AddComplaintEvidence: add_complaint_evidence,
    ExpirePaymentWindow: expire_payment_window,
    ExpirePaymentProof: expire_payment_proof,
    CloseFreezeWindow: close_freeze_window,
    ExpireSanctions: expire_sanctions,
    MarkComplaintOverdue: mark_complaint_overdue,
}
