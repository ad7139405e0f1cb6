"""The order and appeal rulebooks of rules.md, declared as data.

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
            (ISSUE_NOT_RESOLVED,),
            PARTIES,
        ),
        Step(
            "open_appeal",
            TERMINAL_ORDER,
            "=",
            "A2",
            (NO_APPEAL_OPEN, ISSUE_NOT_RESOLVED, WITHIN_APPEAL_WINDOW),
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
        "open_appeal": [NO_APPEAL_OPEN, ISSUE_NOT_RESOLVED, PAYMENT_MARKED],
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

LIVE_APPEAL = [s.value for s in AppealState if s not in APPEAL_TERMINAL]

APPEAL = Rulebook(
    "appeal",
    states=[s.value for s in AppealState],
    initial=AppealState.OPEN,
    steps=[
        Step("start_review", AppealState.OPEN, AppealState.UNDER_REVIEW, "R4", (), AGENT),
        Step("add_evidence", LIVE_APPEAL, "=", "A8", (), PARTIES | AGENT),
        Step("cancel_appeal", LIVE_APPEAL, AppealState.CANCELLED, "A4", (), OPENER),
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
    ],
    refusals={
        "submit_payment_proof": [PROOF_DEADLINE_NOT_FIRED],
        "submit_freeze_proof": [FREEZE_WINDOW_OPEN],
        # scenarios.md precedence: these codes win over invalid_state from any state.
        "request_refund": [WITHIN_REFUND_LIMIT],
        "resolve_appeal": [NO_PRICE_DEVIATION, REFUND_SETTLED],
    },
)
