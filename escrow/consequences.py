"""Rules whose decision on one aggregate binds another: decided here, next to the rulebooks,
so a handler only loads the aggregates and saves what changed, in one transaction."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import datetime
from decimal import Decimal

from escrow.actors import Actor
from escrow.appeal import Appeal
from escrow.complaint import Complaint
from escrow.order import Order
from escrow.policy import Policy
from escrow.trader import Trader
from escrow.vocabulary import SUSPEND_BUYER_ON_OPENING, Decision, SanctionKind


def suspend_buyer_on_opening(
    appeal: Appeal, buyer: Callable[[], Trader], by: Actor, policy: Policy, at: datetime
) -> None:
    """C4/R7 and C6: a seller's appeal for a frozen bank account or a reversed payment
    suspends the buyer at once (S2). `buyer` loads the trader only when the rule applies:
    other appeals never touch it."""
    if appeal.reason not in SUSPEND_BUYER_ON_OPENING:
        return
    buyer().sanction(
        SanctionKind.TRADING_SUSPENSION_24H,
        by=by,
        at=at,
        policy=policy,
        rule=appeal.rule,
        appeal=appeal.ref,
    )


def reversal_confirmed(
    appeal: Appeal,
    order: Order,
    buyer: Callable[[], Trader],
    amount: Decimal,
    by: Actor,
    policy: Policy,
    at: datetime,
) -> None:
    """K1: the reversal opens the clawback and suspends the buyer for good (S4), unless an S4
    is already active (a second one would be refused, and the buyer is suspended anyway)."""
    appeal.confirm_reversal(by, amount, order, at)
    trader = buyer()
    if any(s["kind"] == SanctionKind.PERMANENT_SUSPENSION for s in trader.active(at)):
        return
    trader.sanction(
        SanctionKind.PERMANENT_SUSPENSION, by=by, at=at, policy=policy, rule="K1", appeal=appeal.ref
    )


def close_complaint(
    complaint: Complaint,
    appeal: Appeal,
    complainant: Trader | None,
    by: Actor,
    at: datetime,
) -> None:
    """E2/E4: the appeal learns the complaint is over (a decided one closes it to further
    complaints); an overturned one lifts the sanctions the appeal put on the complainant."""
    decided = complaint.decision is not None
    appeal.complaint_closed(complaint.ref, decided, by, at)
    if complaint.decision == Decision.OVERTURNED and complainant is not None:
        complainant.lift_from_appeal(appeal.ref, by, at, "E4")


def suspend_seller_on_refused_refund(
    appeal: Appeal, seller: Trader, by: Actor, policy: Policy, at: datetime
) -> None:
    """S1: a seller who refuses a refund loses P2P until an agent lifts it; a seller already
    suspended is not suspended twice."""
    if any(s["kind"] == SanctionKind.P2P_SUSPENSION for s in seller.active(at)):
        return
    seller.sanction(
        SanctionKind.P2P_SUSPENSION, by=by, at=at, policy=policy, rule="S1", appeal=appeal.ref
    )


def refunds_requested(appeal: Appeal, others: Iterable[Appeal | None]) -> Decimal:
    """R3: what every appeal on the order asked the seller to refund, refused requests
    excluded, so that no series of appeals refunds more than the payment."""
    return appeal.requested_refunds() + sum(
        (a.requested_refunds() for a in others if a is not None), Decimal(0)
    )
