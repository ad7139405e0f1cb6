"""The public API, imported from one place: `from commands import Escrow, CreateOrder, ...`.

Everything an embedding backend needs is named here: the engine, the command models, the
refusals, the clocks, the policy, the views the queries answer, and the event feed with its
extension point (`EventHandler` run by a `Subscription`, docs/events.md). The modules behind these names
may move; these imports stay.
"""

from commands.api import Escrow
from commands.events import EventFeed, event_json
from commands.models import (
    AddEvidence,
    AgreeTopUp,
    ApplySanction,
    CancelAppeal,
    CancelOrder,
    Command,
    ConfirmRefund,
    ConfirmTopUp,
    CreateOrder,
    LiftSanction,
    MarkPaid,
    OpenAppeal,
    RefuseRefund,
    RefuseTopUp,
    Release,
    ReportRefund,
    RequestPaymentProof,
    RequestRefund,
    ResolveAppeal,
    StartReview,
    SubmitFreezeProof,
    SubmitPaymentProof,
    parse_command,
)
from commands.subscription import EventHandler, Subscription
from escrow.clock import (
    Clock,
    ManualClock,
    SystemClock,
)
from escrow.errors import (
    AmountExceedsLimit,
    AppealAlreadyOpen,
    AppealNotAllowed,
    ConcurrencyConflict,
    DeadlinePassed,
    DuplicateId,
    EscrowError,
    InvalidState,
    IssueAlreadyResolved,
    NotAuthorized,
    NotFound,
    PriceDeviation,
    RefundPending,
    ReleaseBlockedByAppeal,
    TraderSuspended,
    ValidationError,
)
from escrow.policy import Policy
from escrow.views import (
    AppealView,
    EscrowBalance,
    LedgerView,
    OrderView,
    Outcome,
    Recorded,
    RefundView,
    SanctionView,
    TraderView,
)
from projections.appeal_queue import QueueItem
from projections.ledger import LedgerLine
from projections.orders import OrderRow
from projections.readstore import Cursor
from projections.traders import TraderStats

__all__ = [
    "AddEvidence",
    "AgreeTopUp",
    "AmountExceedsLimit",
    "AppealAlreadyOpen",
    "AppealNotAllowed",
    "AppealView",
    "ApplySanction",
    "CancelAppeal",
    "CancelOrder",
    "Clock",
    "Command",
    "ConcurrencyConflict",
    "ConfirmRefund",
    "ConfirmTopUp",
    "CreateOrder",
    "Cursor",
    "DeadlinePassed",
    "DuplicateId",
    "Escrow",
    "EscrowBalance",
    "EscrowError",
    "EventFeed",
    "EventHandler",
    "InvalidState",
    "IssueAlreadyResolved",
    "LedgerLine",
    "LedgerView",
    "LiftSanction",
    "ManualClock",
    "MarkPaid",
    "NotAuthorized",
    "NotFound",
    "OpenAppeal",
    "OrderRow",
    "OrderView",
    "Outcome",
    "Policy",
    "PriceDeviation",
    "QueueItem",
    "Recorded",
    "RefundPending",
    "RefundView",
    "RefuseRefund",
    "RefuseTopUp",
    "Release",
    "ReleaseBlockedByAppeal",
    "ReportRefund",
    "RequestPaymentProof",
    "RequestRefund",
    "ResolveAppeal",
    "SanctionView",
    "StartReview",
    "SubmitFreezeProof",
    "SubmitPaymentProof",
    "Subscription",
    "SystemClock",
    "TraderStats",
    "TraderSuspended",
    "TraderView",
    "ValidationError",
    "event_json",
    "parse_command",
]
