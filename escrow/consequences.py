"""Rules whose decision on one aggregate binds another: decided here, next to the rulebooks,
so a handler only loads the aggregates and saves what changed, in one transaction."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import datetime
from decimal import Decimal

from escrow.actors import Actor
from escrow.appeal import Appeal
from escrow.policy import Policy
from escrow.trader import Trader
from escrow.vocabulary import Reason, SanctionKind


def suspend_buyer_on_freeze(
    appeal: Appeal, buyer: Callable[[], Trader], by: Actor, policy: Policy, at: datetime
) -> None:
    """C4/R7: a seller's appeal for a frozen bank account suspends the buyer at once (S2).
    `buyer` loads the trader only when the rule applies: other appeals never touch it."""
    if appeal.reason != Reason.BANK_ACCOUNT_FROZEN:
        return
    buyer().sanction(
        SanctionKind.TRADING_SUSPENSION_24H,
        by=by,
        at=at,
        policy=policy,
        rule="C4",
        appeal=appeal.ref,
    )


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
