"""The words of rules.md: states, reasons, outcomes, sanction kinds, roles.

Events store these as plain strings (stored JSON returns str-enums as strings anyway), so the
enums are for code that decides, never for what is recorded.
"""

from __future__ import annotations

from enum import StrEnum

SYSTEM = "system"


class OrderState(StrEnum):
    AWAITING_PAYMENT = "awaiting_payment"
    PAID = "paid"
    IN_APPEAL = "in_appeal"
    COMPLETED = "completed"
    CANCELLED = "cancelled"


ORDER_TERMINAL = frozenset({OrderState.COMPLETED, OrderState.CANCELLED})


class AppealState(StrEnum):
    OPEN = "open"
    UNDER_REVIEW = "under_review"
    AWAITING_REFUND = "awaiting_refund"
    AWAITING_PAYMENT_PROOF = "awaiting_payment_proof"
    AWAITING_TOP_UP = "awaiting_top_up"
    AWAITING_FREEZE_PROOF = "awaiting_freeze_proof"
    RESOLVED = "resolved"
    CANCELLED = "cancelled"


APPEAL_TERMINAL = frozenset({AppealState.RESOLVED, AppealState.CANCELLED})


class Reason(StrEnum):
    SELLER_NOT_RELEASING = "seller_not_releasing"  # B1
    CANCELLED_AFTER_PAYMENT = "cancelled_after_payment"  # B2
    AMOUNT_MISMATCH = "amount_mismatch"  # B3
    SELLER_PAYMENT_METHOD_PROBLEM = "seller_payment_method_problem"  # B4
    VERBAL_ABUSE = "verbal_abuse"  # B5 / C5
    PAYMENT_NOT_RECEIVED = "payment_not_received"  # C1
    INSUFFICIENT_PAYMENT = "insufficient_payment"  # C2
    NON_REAL_NAME_PAYMENT = "non_real_name_payment"  # C3
    BANK_ACCOUNT_FROZEN = "bank_account_frozen"  # C4
    PAYMENT_REVERSED = "payment_reversed"  # C6


class Role(StrEnum):
    BUYER = "buyer"
    SELLER = "seller"
    AGENT = "agent"
    SYSTEM = "system"
    OPENER = "opener"  # the trader who opened the appeal (A9)
    SUPERVISOR = "supervisor"  # an agent handling complaints, not the appeal's resolver (E3)
    COMPLAINANT = "complainant"  # the trader who filed the complaint (E6)
    COMPLAINT = "complaint"  # an appeal event recorded by a complaint's own command (E2)


BUYER_REASONS = frozenset(
    {
        Reason.SELLER_NOT_RELEASING,
        Reason.CANCELLED_AFTER_PAYMENT,
        Reason.AMOUNT_MISMATCH,
        Reason.SELLER_PAYMENT_METHOD_PROBLEM,
        Reason.VERBAL_ABUSE,
    }
)
SELLER_REASONS = frozenset(
    {
        Reason.PAYMENT_NOT_RECEIVED,
        Reason.INSUFFICIENT_PAYMENT,
        Reason.NON_REAL_NAME_PAYMENT,
        Reason.BANK_ACCOUNT_FROZEN,
        Reason.VERBAL_ABUSE,
        Reason.PAYMENT_REVERSED,
    }
)
# Seller reasons whose opening suspends the buyer at once (S2): C4 and C6.
SUSPEND_BUYER_ON_OPENING = frozenset({Reason.BANK_ACCOUNT_FROZEN, Reason.PAYMENT_REVERSED})

# The rule ID that states each reason's guideline, per side.
REASON_RULE: dict[tuple[str, str], str] = {
    (Role.BUYER, Reason.SELLER_NOT_RELEASING): "B1",
    (Role.BUYER, Reason.CANCELLED_AFTER_PAYMENT): "B2",
    (Role.BUYER, Reason.AMOUNT_MISMATCH): "B3",
    (Role.BUYER, Reason.SELLER_PAYMENT_METHOD_PROBLEM): "B4",
    (Role.BUYER, Reason.VERBAL_ABUSE): "B5",
    (Role.SELLER, Reason.PAYMENT_NOT_RECEIVED): "C1",
    (Role.SELLER, Reason.INSUFFICIENT_PAYMENT): "C2",
    (Role.SELLER, Reason.NON_REAL_NAME_PAYMENT): "C3",
    (Role.SELLER, Reason.BANK_ACCOUNT_FROZEN): "C4",
    (Role.SELLER, Reason.VERBAL_ABUSE): "C5",
    (Role.SELLER, Reason.PAYMENT_REVERSED): "C6",
}


class Outcome(StrEnum):
    RELEASE = "release"
    CANCEL = "cancel"
    NONE = "none"


class SanctionKind(StrEnum):
    P2P_SUSPENSION = "p2p_suspension"  # S1
    TRADING_SUSPENSION_24H = "trading_suspension_24h"  # S2
    PARTIAL_BAN = "partial_ban"  # S3
    PERMANENT_SUSPENSION = "permanent_suspension"  # S4


SANCTION_RULE: dict[str, str] = {
    SanctionKind.P2P_SUSPENSION: "S1",
    SanctionKind.TRADING_SUSPENSION_24H: "S2",
    SanctionKind.PARTIAL_BAN: "S3",
    SanctionKind.PERMANENT_SUSPENSION: "S4",
}


class Severity(StrEnum):
    NORMAL = "normal"
    SEVERE = "severe"


class RefundState(StrEnum):
    REQUESTED = "requested"
    REPORTED = "reported"
    CONFIRMED = "confirmed"
    REFUSED = "refused"


class TopUp(StrEnum):
    AGREED = "agreed"
    REFUSED = "refused"
    CONFIRMED = "confirmed"


class ClawbackState(StrEnum):
    """K1–K3: the crypto a buyer owes back after a confirmed payment reversal."""

    OPEN = "open"
    RECOVERED = "recovered"
    WAIVED = "waived"


class ComplaintState(StrEnum):
    FILED = "filed"
    UNDER_REVIEW = "under_review"
    UPHELD = "upheld"
    OVERTURNED = "overturned"
    WITHDRAWN = "withdrawn"


COMPLAINT_TERMINAL = frozenset(
    {ComplaintState.UPHELD, ComplaintState.OVERTURNED, ComplaintState.WITHDRAWN}
)
COMPLAINT_DECIDED = frozenset({ComplaintState.UPHELD, ComplaintState.OVERTURNED})


class Decision(StrEnum):
    UPHELD = "upheld"
    OVERTURNED = "overturned"
