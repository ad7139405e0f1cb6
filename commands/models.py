"""One pydantic model per command of scenarios.md, validated at the boundary.

Limits are part of the contract (README, "Input limits"): ids and names up to 64 characters of
letters, digits and `._:@-`; asset and fiat codes 2–10 upper-case letters or digits; amounts
positive, finite, exact (no floats), at most 18 decimal places and below 10^15; descriptions up
to 2,000 characters, notes and references up to 200, at most 20 evidence refs; a per-order
payment window up to 30 days.
"""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from typing import Annotated, Any, ClassVar, Literal

import pydantic
from pydantic import (
    AfterValidator,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
    StringConstraints,
    ValidationInfo,
    field_validator,
)
from pydantic_core import ErrorDetails

from escrow.durations import parse_duration
from escrow.validated import InvalidFields, Validated, field_errors
from escrow.vocabulary import Reason

MAX_AMOUNT = Decimal(10) ** 15
MAX_PLACES = 18
MAX_WINDOW = timedelta(days=30)  # a per-order payment window; its deadline must stay a date


def _exact_amount(value: Any) -> Decimal:
    if isinstance(value, bool | float):
        raise ValueError("amounts are strings or integers, never floats (a float is inexact)")
    if isinstance(value, int):
        value = Decimal(value)
    elif isinstance(value, str):
        try:
            value = Decimal(value.strip())
        except ArithmeticError:
            raise ValueError(f"not a decimal number: {value!r}") from None
    if not isinstance(value, Decimal):
        raise ValueError("amounts are decimal strings or integers")
    if not value.is_finite():
        raise ValueError("amounts are finite numbers")
    if value <= 0:
        raise ValueError("amounts are positive")
    if value >= MAX_AMOUNT:
        raise ValueError("amount too large (limit 10^15)")
    exponent = value.as_tuple().exponent
    if isinstance(exponent, int) and exponent < -MAX_PLACES:
        raise ValueError(f"at most {MAX_PLACES} decimal places")
    return value


def _duration(value: Any) -> timedelta:
    if not isinstance(value, str):
        raise ValueError("durations are written like 15m, 24h or 2d")
    parsed = parse_duration(value)
    if parsed <= timedelta(0):
        raise ValueError("a duration must be positive")
    if parsed > MAX_WINDOW:
        raise ValueError("a payment window is at most 30d")
    return parsed


def _no_nul(value: str) -> str:
    """PostgreSQL text cannot hold NUL: one stored would stop its read models for good."""
    if "\x00" in value:
        raise ValueError("text may not contain NUL characters")
    return value


Amount = Annotated[Decimal, BeforeValidator(_exact_amount)]
REF_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:@-]{0,63}$"  # ids and names
CODE_PATTERN = r"^[A-Z0-9]{2,10}$"  # asset and fiat codes
Ref = Annotated[str, StringConstraints(strict=True, pattern=REF_PATTERN)]
Code = Annotated[str, StringConstraints(strict=True, pattern=CODE_PATTERN)]
Text = Annotated[
    str, StringConstraints(strict=True, min_length=1, max_length=2000), AfterValidator(_no_nul)
]
Short = Annotated[
    str, StringConstraints(strict=True, min_length=1, max_length=200), AfterValidator(_no_nul)
]
Method = Annotated[
    str, StringConstraints(strict=True, min_length=1, max_length=64), AfterValidator(_no_nul)
]
Refs = Annotated[list[Short], Field(max_length=20)]
Window = Annotated[timedelta, BeforeValidator(_duration)]
ReasonCode = Literal[
    "seller_not_releasing",
    "cancelled_after_payment",
    "amount_mismatch",
    "seller_payment_method_problem",
    "verbal_abuse",
    "payment_not_received",
    "insufficient_payment",
    "non_real_name_payment",
    "bank_account_frozen",
    "payment_reversed",
]
assert set(ReasonCode.__args__) == {r.value for r in Reason}  # type: ignore[attr-defined]


class Command(Validated):
    """Every command names its actor (`by`) and may carry a `command_id` for idempotency.
    Bad input raises the engine's InvalidCommand (escrow.validated), never pydantic's error."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    name: ClassVar[str]

    command_id: Ref | None = None

    @classmethod
    def invalid_input(cls, error: pydantic.ValidationError) -> InvalidCommand:
        return invalid(cls.name, error)

    @property
    def actor(self) -> str:
        return str(vars(self).get("by", "platform"))  # getattr's miss costs an exception


class OrderCommand(Command):
    order: Ref
    by: Ref


class AppealCommand(Command):
    appeal: Ref
    by: Ref


class CreateOrder(Command):
    name = "create_order"
    order: Ref
    seller: Ref
    buyer: Ref
    asset: Code
    amount: Amount
    price: Amount
    fiat: Code
    payment_method: Method
    reference_price: Amount | None = None
    instant: StrictBool = True
    payment_window: Window | None = None


class MarkPaid(OrderCommand):
    name = "mark_paid"
    paid_amount: Amount | None = None


class CancelOrder(OrderCommand):
    name = "cancel_order"


class Release(OrderCommand):
    name = "release"


class OpenAppeal(OrderCommand):
    name = "open_appeal"
    reason: ReasonCode
    appeal: Ref
    description: Text | None = None


class AddEvidence(AppealCommand):
    name = "add_evidence"
    description: Text
    refs: Refs = []


class CancelAppeal(AppealCommand):
    name = "cancel_appeal"


class StartReview(AppealCommand):
    name = "start_review"


class RequestRefund(AppealCommand):
    name = "request_refund"
    amount: Amount
    note: Short | None = None


class ReportRefund(AppealCommand):
    name = "report_refund"
    amount: Amount
    reference: Short | None = None


class ConfirmRefund(AppealCommand):
    name = "confirm_refund"


class RefuseRefund(AppealCommand):
    name = "refuse_refund"


class RequestPaymentProof(AppealCommand):
    name = "request_payment_proof"


class SubmitPaymentProof(AppealCommand):
    name = "submit_payment_proof"
    refs: Refs = []


class AgreeTopUp(AppealCommand):
    name = "agree_top_up"


class RefuseTopUp(AppealCommand):
    name = "refuse_top_up"


class ConfirmTopUp(AppealCommand):
    name = "confirm_top_up"
    amount: Amount | None = None


class SubmitFreezeProof(AppealCommand):
    name = "submit_freeze_proof"
    refs: Refs = []


class ApplySanction(Command):
    name = "apply_sanction"
    trader: Ref
    by: Ref
    kind: Literal["p2p_suspension", "partial_ban", "permanent_suspension"]
    severity: Literal["normal", "severe"] | None = None
    appeal: Ref | None = None


class LiftSanction(Command):
    name = "lift_sanction"
    trader: Ref
    by: Ref
    kind: Literal["p2p_suspension", "trading_suspension_24h", "partial_ban", "permanent_suspension"]


class ResolveAppeal(AppealCommand):
    name = "resolve_appeal"
    outcome: Literal["release", "cancel"] | None = None


class ConfirmReversal(AppealCommand):
    name = "confirm_reversal"
    amount: Amount


class RecordRecovery(AppealCommand):
    name = "record_recovery"
    amount: Amount


class WaiveClawback(AppealCommand):
    name = "waive_clawback"


class ComplaintCommand(Command):
    complaint: Ref
    by: Ref


class FileComplaint(ComplaintCommand):
    name = "file_complaint"
    appeal: Ref
    statement: Text
    refs: Refs = []


class StartComplaintReview(ComplaintCommand):
    name = "start_complaint_review"


class DecideComplaint(ComplaintCommand):
    name = "decide_complaint"
    decision: Literal["upheld", "overturned"]
    compensation: Amount | None = None

    @field_validator("compensation")
    @classmethod
    def _only_when_overturned(cls, value: Decimal | None, info: ValidationInfo) -> Decimal | None:
        """E4: a decision that lets the resolution stand owes the complainant nothing."""
        if value is not None and info.data.get("decision") == "upheld":
            raise ValueError("a compensation goes with an overturned decision only (E4)")
        return value


class WithdrawComplaint(ComplaintCommand):
    name = "withdraw_complaint"


class AddComplaintEvidence(ComplaintCommand):
    name = "add_complaint_evidence"
    description: Text
    refs: Refs = []


class AppointAgent(Command):
    """Appoint a person to customer service (or change between agent and supervisor). Issued
    by the platform, like create_order: the exchange's staff directory decides, not an agent."""

    name = "appoint_agent"
    agent: Ref
    supervisor: StrictBool = False


class DismissAgent(Command):
    name = "dismiss_agent"
    agent: Ref


COMMANDS: dict[str, type[Command]] = {
    cls.name: cls
    for cls in (
        CreateOrder,
        MarkPaid,
        CancelOrder,
        Release,
        OpenAppeal,
        AddEvidence,
        CancelAppeal,
        StartReview,
        RequestRefund,
        ReportRefund,
        ConfirmRefund,
        RefuseRefund,
        RequestPaymentProof,
        SubmitPaymentProof,
        AgreeTopUp,
        RefuseTopUp,
        ConfirmTopUp,
        SubmitFreezeProof,
        ApplySanction,
        LiftSanction,
        ResolveAppeal,
        ConfirmReversal,
        RecordRecovery,
        WaiveClawback,
        FileComplaint,
        StartComplaintReview,
        DecideComplaint,
        WithdrawComplaint,
        AddComplaintEvidence,
        AppointAgent,
        DismissAgent,
    )
}


class InvalidCommand(InvalidFields):
    """A command that does not fit its model; `fields` names what is wrong, field by field."""

    def __init__(
        self, name: str, fields: list[tuple[str, str]], details: list[ErrorDetails] | None = None
    ) -> None:
        self.command = name
        super().__init__(name, fields, details)


def parse_command(name: str, data: Any) -> Command:
    """Build a command from plain data (a scenario step, JSON); refusals are typed."""
    model = COMMANDS.get(name) if isinstance(name, str) else None
    if model is None:
        raise InvalidCommand(name, [("command", f"unknown command {name!r}")])
    if not isinstance(data, dict):
        raise InvalidCommand(name, [("fields", "expected a mapping of fields")])
    return model.model_validate(data)


def invalid(name: str, error: pydantic.ValidationError) -> InvalidCommand:
    return InvalidCommand(name, field_errors(error, "fields"), error.errors())
