"""The order, appeal and complaint rulebooks of rules.md, declared as data.

Each guard names the refusal code and rule ID it stands for; `Situation` is what a guard may
look at: the aggregates as they are, the time, and the command's own facts.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from escrow.rulebook import Guard, Rulebook, Step
from escrow.vocabulary import (
    APPEAL_TERMINAL,
    AppealState,
    ClawbackState,
    ComplaintState,
    OrderState,
    Outcome,
    Reason,
    RefundState,
    Role,
    TopUp,
)


@dataclass(frozen=True)
class Situation:
    order: Any
    now: datetime
    appeal: Any = None
    issue: str | None = None
    outcome: str | None = None
    amount: Decimal | None = None
    refunds_total: Decimal = Decimal(0)
    reason: str | None = None
    deadline: datetime | None = None  # a window the command must meet (E1)
    complaint: Any = None


def _who(*roles: str) -> frozenset[str]:
    return frozenset(roles)


BUYER, SELLER, AGENT, SYSTEM, OPENER = (
    _who(Role.BUYER),
    _who(Role.SELLER),
    _who(Role.AGENT),
    _who(Role.SYSTEM),
    _who(Role.OPENER),
)
PARTIES = _who(Role.BUYER, Role.SELLER)
SUPERVISOR, COMPLAINANT = _who(Role.SUPERVISOR), _who(Role.COMPLAINANT)
BY_COMPLAINT = _who(Role.COMPLAINT)

# --- order guards -------------------------------------------------------------------------

BEFORE_PAYMENT_DEADLINE = Guard(
    "deadline_passed",
    "O2",
    "the payment deadline has passed",
    lambda s: s.now < s.order.payment_deadline,
)
PAYMENT_DEADLINE_REACHED = Guard(
    "invalid_state",
    "O3",
    "the payment deadline has not been reached",
    lambda s: s.now >= s.order.payment_deadline,
)
NOT_EXPIRED = Guard(
    "deadline_passed",
    "O3",
    "the order was cancelled when its payment deadline passed",
    lambda s: s.order.cancel_reason != "payment_window_expired",
)
NO_APPEAL_BLOCKING_RELEASE = Guard(
    "release_blocked_by_appeal",
    "A5",
    "an appeal is open on this order",
    lambda s: s.order.open_appeal is None,
)
NO_APPEAL_OPEN = Guard(
    "appeal_already_open",
    "A7",
    "an appeal is already open on this order; add evidence to it instead",
    lambda s: s.order.open_appeal is None,
)
ISSUE_NOT_RESOLVED = Guard(
    "issue_already_resolved",
    "A3",
    "an appeal on this issue was already resolved",
    lambda s: s.issue not in s.order.resolved_issues,
)
PAYMENT_MARKED = Guard(
    "appeal_not_allowed",
    "A6",
    "no appeal while the order awaits payment",
    lambda s: s.order.state != OrderState.AWAITING_PAYMENT,
)
WITHIN_APPEAL_WINDOW = Guard(
    "appeal_not_allowed",
    "A6",
    "the appeal window after the order closed has passed",
    lambda s: s.now < s.order.appeal_deadline,
)

REVERSAL_AFTER_RELEASE = Guard(
    "appeal_not_allowed",
    "C6",
    "a payment reversal is appealed only on a completed order",
    lambda s: s.reason != Reason.PAYMENT_REVERSED or s.order.state == OrderState.COMPLETED,
)

TERMINAL_ORDER = [OrderState.COMPLETED, OrderState.CANCELLED]
APPEALABLE = [OrderState.IN_APPEAL, *TERMINAL_ORDER]

ORDER = Rulebook(
    "order",
    states=[s.value for s in OrderState],
    initial=OrderState.AWAITING_PAYMENT,
    steps=[
        Step(
            "mark_paid",
            OrderState.AWAITING_PAYMENT,
            OrderState.PAID,
            "O2",
            (BEFORE_PAYMENT_DEADLINE,),
            BUYER,
        ),
        Step(
            "expire_payment_window",
            OrderState.AWAITING_PAYMENT,
            OrderState.CANCELLED,
            "O3",
            (PAYMENT_DEADLINE_REACHED,),
            SYSTEM,
        ),
        Step(
            "cancel_order",
            [OrderState.AWAITING_PAYMENT, OrderState.PAID],
            OrderState.CANCELLED,
            "O4",
            (),
            BUYER,
        ),
        Step("release", OrderState.PAID, OrderState.COMPLETED, "O5", (), SELLER),
        Step(
            "open_appeal",
            OrderState.PAID,
            OrderState.IN_APPEAL,
            "A6",
            (ISSUE_NOT_RESOLVED, REVERSAL_AFTER_RELEASE),
            PARTIES,
        ),
        Step(
            "open_appeal",
            TERMINAL_ORDER,
            "=",
            "A2",
            (NO_APPEAL_OPEN, ISSUE_NOT_RESOLVED, WITHIN_APPEAL_WINDOW, REVERSAL_AFTER_RELEASE),
            PARTIES,
        ),
        Step("appeal_cancelled", OrderState.IN_APPEAL, OrderState.PAID, "A6", (), OPENER),
        Step("appeal_cancelled", TERMINAL_ORDER, "=", "A2", (), OPENER),
        Step("resolved_release", OrderState.IN_APPEAL, OrderState.COMPLETED, "A1", (), AGENT),
        Step(
            "resolved_cancel", OrderState.IN_APPEAL, OrderState.CANCELLED, "A1", (), AGENT | SYSTEM
        ),
        Step("resolved_none", OrderState.IN_APPEAL, OrderState.PAID, "A1", (), AGENT),
        Step("resolved_none", TERMINAL_ORDER, "=", "A2", (), AGENT | SYSTEM),
        Step("top_up_confirmed", APPEALABLE, "=", "R6", (), AGENT),
    ],
    refusals={
        "mark_paid": [NOT_EXPIRED],
        "release": [NO_APPEAL_BLOCKING_RELEASE],
        "open_appeal": [NO_APPEAL_OPEN, ISSUE_NOT_RESOLVED, PAYMENT_MARKED, REVERSAL_AFTER_RELEASE],
    },
)

# --- appeal guards ------------------------------------------------------------------------


def _deviates(order: Any) -> bool:
    reference: Decimal = order.reference_price
    deviation: Decimal = abs(order.price - reference) / reference
    return bool(deviation > order.price_deviation_limit)


def _refund_required(s: Situation) -> bool:
    """R2: the cases where a cancel needs a settled refund even if none was requested."""
    reason = s.appeal.reason
    return (
        (reason == Reason.SELLER_NOT_RELEASING and _deviates(s.order))
        or reason == Reason.NON_REAL_NAME_PAYMENT
        or (reason == Reason.INSUFFICIENT_PAYMENT and s.appeal.top_up == TopUp.REFUSED)
    )


def _refund_limit(s: Situation) -> Decimal:
    """R3: what the refunds of an order may add up to, by the reason of this appeal."""
    order = s.order
    paid: Decimal = order.fiat_amount if order.paid_amount is None else order.paid_amount
    if s.appeal.reason == Reason.AMOUNT_MISMATCH:
        overpaid: Decimal = paid - order.fiat_amount
        return max(overpaid, Decimal(0))
    return paid


def _settled(appeal: Any) -> bool:
    return any(r["state"] in (RefundState.CONFIRMED, RefundState.REFUSED) for r in appeal.refunds)


IS_PAYMENT_NOT_RECEIVED = Guard(
    "invalid_state",
    "R5",
    "payment proof is asked only in a payment_not_received appeal (C1)",
    lambda s: s.appeal.reason == Reason.PAYMENT_NOT_RECEIVED,
)
NON_INSTANT_METHOD = Guard(
    "invalid_state",
    "R5",
    "with an instant payment method CS decides directly (C1)",
    lambda s: not s.order.instant,
)
BEFORE_PROOF_DEADLINE = Guard(
    "deadline_passed",
    "C1",
    "the 2-day payment proof deadline has passed",
    lambda s: s.now < s.appeal.proof_deadline,
)
PROOF_DEADLINE_REACHED = Guard(
    "invalid_state",
    "R5",
    "the payment proof deadline has not been reached",
    lambda s: s.now >= s.appeal.proof_deadline,
)
PROOF_DEADLINE_NOT_FIRED = Guard(
    "deadline_passed",
    "C1",
    "the payment proof deadline has passed",
    lambda s: not s.appeal.proof_deadline_passed,
)
IS_INSUFFICIENT_PAYMENT = Guard(
    "invalid_state",
    "R6",
    "top-ups belong to an insufficient_payment appeal (C2)",
    lambda s: s.appeal.reason == Reason.INSUFFICIENT_PAYMENT,
)
BEFORE_FREEZE_DEADLINE = Guard(
    "deadline_passed",
    "C4",
    "the 24-hour freeze proof window has passed",
    lambda s: s.now < s.appeal.freeze_deadline,
)
FREEZE_DEADLINE_REACHED = Guard(
    "invalid_state",
    "R7",
    "the freeze proof window has not closed yet",
    lambda s: s.now >= s.appeal.freeze_deadline,
)
FREEZE_WINDOW_OPEN = Guard(
    "deadline_passed",
    "C4",
    "the 24-hour freeze proof window has passed",
    lambda s: not s.appeal.freeze_window_closed,
)
WITHIN_REFUND_LIMIT = Guard(
    "amount_exceeds_limit",
    "R3",
    "the refunds would exceed what the rules allow",
    lambda s: s.amount is None or s.refunds_total + s.amount <= _refund_limit(s),
)
NO_PRICE_DEVIATION = Guard(
    "price_deviation",
    "B1a",
    "the order price deviates from the reference price beyond the limit: cancel after a refund",
    lambda s: (
        not (
            s.outcome == Outcome.RELEASE
            and s.appeal.reason == Reason.SELLER_NOT_RELEASING
            and _deviates(s.order)
        )
    ),
)
REFUND_SETTLED = Guard(
    "refund_pending",
    "R2",
    "a cancel waits on a refund confirmed or refused",
    lambda s: (
        s.outcome != Outcome.CANCEL
        or (s.appeal.refund_pending is False and (not _refund_required(s) or _settled(s.appeal)))
    ),
)

IS_PAYMENT_REVERSED = Guard(
    "invalid_state",
    "K1",
    "a reversal is confirmed only in a payment_reversed appeal (C6)",
    lambda s: s.appeal.reason == Reason.PAYMENT_REVERSED,
)
NO_REVERSAL_YET = Guard(
    "invalid_state",
    "K1",
    "the reversal of this appeal was already confirmed",
    lambda s: s.appeal.clawback is None,
)
CLAWBACK_WITHIN_ORDER = Guard(
    "amount_exceeds_limit",
    "K1",
    "a clawback is at most the order's amount",
    lambda s: s.amount is None or s.amount <= s.order.amount,
)
CLAWBACK_OPEN = Guard(
    "invalid_state",
    "K2",
    "no open clawback on this appeal",
    lambda s: s.appeal.clawback_state == ClawbackState.OPEN,
)
# Holds when no clawback is open, so that a missing clawback is invalid_state whatever the amount.
RECOVERY_WITHIN_CLAWBACK = Guard(
    "amount_exceeds_limit",
    "K2",
    "the recoveries would exceed the clawback",
    lambda s: (
        s.appeal.clawback_state != ClawbackState.OPEN
        or s.amount is None
        or s.appeal.recovered + s.amount <= s.appeal.clawback
    ),
)
NOT_CLAWED_BACK = Guard(
    "invalid_state",
    "K1",
    "a confirmed reversal is CS's decision: the appeal can no longer be withdrawn",
    lambda s: s.appeal.clawback is None,
)
COMPLAINT_NOT_DECIDED = Guard(
    "issue_already_resolved",
    "E2",
    "a complaint about this appeal was already decided",
    lambda s: not s.appeal.complaint_decided,
)
NO_LIVE_COMPLAINT = Guard(
    "invalid_state",
    "E2",
    "a complaint about this appeal is already being handled",
    lambda s: s.appeal.complaint is None,
)
WITHIN_COMPLAINT_WINDOW = Guard(
    "deadline_passed",
    "E1",
    "the complaint window after the appeal's resolution has passed",
    lambda s: s.deadline is None or s.now < s.deadline,
)

LIVE_APPEAL = [s.value for s in AppealState if s not in APPEAL_TERMINAL]
# K2/K3: a clawback is worked on while CS reviews the appeal and after it is resolved.
CLAWBACK_STATES = [AppealState.UNDER_REVIEW, AppealState.RESOLVED]

APPEAL = Rulebook(
    "appeal",
    states=[s.value for s in AppealState],
    initial=AppealState.OPEN,
    steps=[
        Step("start_review", AppealState.OPEN, AppealState.UNDER_REVIEW, "R4", (), AGENT),
        Step("add_evidence", LIVE_APPEAL, "=", "A8", (), PARTIES | AGENT),
        Step("cancel_appeal", LIVE_APPEAL, AppealState.CANCELLED, "A4", (NOT_CLAWED_BACK,), OPENER),
        Step(
            "request_refund",
            AppealState.UNDER_REVIEW,
            AppealState.AWAITING_REFUND,
            "R1",
            (WITHIN_REFUND_LIMIT,),
            AGENT,
        ),
        Step("report_refund", AppealState.AWAITING_REFUND, "=", "R1", (), SELLER),
        Step(
            "confirm_refund", AppealState.AWAITING_REFUND, AppealState.UNDER_REVIEW, "R1", (), AGENT
        ),
        Step(
            "refuse_refund", AppealState.AWAITING_REFUND, AppealState.UNDER_REVIEW, "S1", (), SELLER
        ),
        Step(
            "request_payment_proof",
            AppealState.UNDER_REVIEW,
            AppealState.AWAITING_PAYMENT_PROOF,
            "R5",
            (IS_PAYMENT_NOT_RECEIVED, NON_INSTANT_METHOD),
            AGENT,
        ),
        Step(
            "submit_payment_proof",
            AppealState.AWAITING_PAYMENT_PROOF,
            AppealState.UNDER_REVIEW,
            "R5",
            (BEFORE_PROOF_DEADLINE,),
            BUYER,
        ),
        Step(
            "expire_payment_proof",
            AppealState.AWAITING_PAYMENT_PROOF,
            AppealState.RESOLVED,
            "C1",
            (PROOF_DEADLINE_REACHED,),
            SYSTEM,
        ),
        Step(
            "agree_top_up",
            AppealState.UNDER_REVIEW,
            AppealState.AWAITING_TOP_UP,
            "R6",
            (IS_INSUFFICIENT_PAYMENT,),
            BUYER,
        ),
        Step(
            "refuse_top_up",
            [AppealState.UNDER_REVIEW, AppealState.AWAITING_TOP_UP],
            AppealState.UNDER_REVIEW,
            "R6",
            (IS_INSUFFICIENT_PAYMENT,),
            BUYER,
        ),
        Step(
            "confirm_top_up",
            AppealState.AWAITING_TOP_UP,
            AppealState.UNDER_REVIEW,
            "R6",
            (IS_INSUFFICIENT_PAYMENT,),
            AGENT,
        ),
        Step(
            "submit_freeze_proof",
            AppealState.AWAITING_FREEZE_PROOF,
            AppealState.UNDER_REVIEW,
            "R7",
            (BEFORE_FREEZE_DEADLINE,),
            SELLER,
        ),
        Step(
            "close_freeze_window",
            AppealState.AWAITING_FREEZE_PROOF,
            AppealState.UNDER_REVIEW,
            "R7",
            (FREEZE_DEADLINE_REACHED,),
            SYSTEM,
        ),
        Step(
            "resolve_appeal",
            AppealState.UNDER_REVIEW,
            AppealState.RESOLVED,
            "A1",
            (NO_PRICE_DEVIATION, REFUND_SETTLED),
            AGENT,
        ),
        Step(
            "confirm_reversal",
            AppealState.UNDER_REVIEW,
            "=",
            "K1",
            (IS_PAYMENT_REVERSED, NO_REVERSAL_YET, CLAWBACK_WITHIN_ORDER),
            AGENT,
        ),
        Step(
            "record_recovery",
            CLAWBACK_STATES,
            "=",
            "K2",
            (CLAWBACK_OPEN, RECOVERY_WITHIN_CLAWBACK),
            AGENT,
        ),
        Step("waive_clawback", CLAWBACK_STATES, "=", "K3", (CLAWBACK_OPEN,), AGENT),
        Step(
            "file_complaint",
            AppealState.RESOLVED,
            "=",
            "E1",
            (COMPLAINT_NOT_DECIDED, NO_LIVE_COMPLAINT, WITHIN_COMPLAINT_WINDOW),
            PARTIES,
        ),
        Step("complaint_closed", AppealState.RESOLVED, "=", "E2", (), BY_COMPLAINT),
    ],
    refusals={
        "submit_payment_proof": [PROOF_DEADLINE_NOT_FIRED],
        "submit_freeze_proof": [FREEZE_WINDOW_OPEN],
        # scenarios.md precedence: these codes win over invalid_state from any state.
        "request_refund": [WITHIN_REFUND_LIMIT],
        "resolve_appeal": [NO_PRICE_DEVIATION, REFUND_SETTLED],
        "confirm_reversal": [CLAWBACK_WITHIN_ORDER],
    },
)

# --- complaint guards ---------------------------------------------------------------------

RESPONSE_DEADLINE_REACHED = Guard(
    "invalid_state",
    "E5",
    "the response deadline has not been reached",
    lambda s: s.now >= s.complaint.response_deadline,
)
NOT_OVERDUE_YET = Guard(
    "invalid_state",
    "E5",
    "the complaint is already recorded as overdue",
    lambda s: not s.complaint.overdue,
)
COMPENSATION_WITHIN_FIAT = Guard(
    "amount_exceeds_limit",
    "E4",
    "a compensation is at most the order's fiat amount",
    lambda s: s.amount is None or s.amount <= s.complaint.fiat_amount,
)

LIVE_COMPLAINT = [ComplaintState.FILED, ComplaintState.UNDER_REVIEW]

COMPLAINT = Rulebook(
    "complaint",
    states=[s.value for s in ComplaintState],
    initial=ComplaintState.FILED,
    steps=[
        Step(
            "start_complaint_review",
            ComplaintState.FILED,
            ComplaintState.UNDER_REVIEW,
            "E3",
            (),
            SUPERVISOR,
        ),
        Step(
            "decide_upheld",
            ComplaintState.UNDER_REVIEW,
            ComplaintState.UPHELD,
            "E3",
            (),
            SUPERVISOR,
        ),
        Step(
            "decide_overturned",
            ComplaintState.UNDER_REVIEW,
            ComplaintState.OVERTURNED,
            "E4",
            (COMPENSATION_WITHIN_FIAT,),
            SUPERVISOR,
        ),
        Step("withdraw_complaint", LIVE_COMPLAINT, ComplaintState.WITHDRAWN, "E6", (), COMPLAINANT),
        Step("add_complaint_evidence", LIVE_COMPLAINT, "=", "E6", (), PARTIES | SUPERVISOR),
        Step(
            "mark_overdue",
            LIVE_COMPLAINT,
            "=",
            "E5",
            (RESPONSE_DEADLINE_REACHED, NOT_OVERDUE_YET),
            SYSTEM,
        ),
    ],
    refusals={"decide_overturned": [COMPENSATION_WITHIN_FIAT]},
)
