"""What the embedding API answers: plain, typed snapshots of the aggregates and read models."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from pydantic import BaseModel, ConfigDict

from escrow.appeal import Appeal
from escrow.complaint import Complaint
from escrow.money import PlainDecimal
from escrow.order import Order
from escrow.trader import Trader


class View(BaseModel):
    model_config = ConfigDict(frozen=True)


class EscrowBalance(View):
    locked: PlainDecimal
    released: PlainDecimal
    returned: PlainDecimal


class OrderView(View):
    order: str
    version: int
    state: str
    seller: str
    buyer: str
    asset: str
    amount: PlainDecimal
    price: PlainDecimal
    reference_price: PlainDecimal
    fiat: str
    fiat_amount: PlainDecimal
    paid_amount: PlainDecimal | None
    payment_method: str
    instant: bool
    payment_deadline: datetime
    created_at: datetime
    paid_at: datetime | None
    closed_at: datetime | None
    cancel_reason: str | None
    open_appeal: str | None
    appeals: list[str]
    escrow: EscrowBalance

    @classmethod
    def of(cls, o: Order) -> OrderView:
        return cls(
            order=o.ref,
            version=o.version,
            state=o.state,
            seller=o.seller,
            buyer=o.buyer,
            asset=o.asset,
            amount=o.amount,
            price=o.price,
            reference_price=o.reference_price,
            fiat=o.fiat,
            fiat_amount=o.fiat_amount,
            paid_amount=o.paid_amount,
            payment_method=o.payment_method,
            instant=o.instant,
            payment_deadline=o.payment_deadline,
            created_at=o.created_on,
            paid_at=o.paid_at,
            closed_at=o.closed_at,
            cancel_reason=o.cancel_reason,
            open_appeal=o.open_appeal,
            appeals=list(o.appeals),
            escrow=EscrowBalance(locked=o.locked, released=o.released, returned=o.returned),
        )


class RefundView(View):
    amount: PlainDecimal
    state: str
    reported: PlainDecimal | None
    reference: str | None
    note: str | None


class AppealView(View):
    appeal: str
    version: int
    order: str
    state: str
    reason: str
    rule: str
    opener: str
    side: str
    agent: str | None
    outcome: str | None
    refund_state: str | None
    refunds: list[RefundView]
    top_up: str | None
    evidence_count: int
    proof_deadline: datetime | None
    freeze_deadline: datetime | None
    opened_at: datetime
    closed_at: datetime | None
    resolved_by: str | None
    clawback: PlainDecimal | None  # K1: the crypto the buyer must give back
    recovered: PlainDecimal  # K2
    clawback_state: str | None  # open, recovered, waived (K1–K3)
    complaints: list[str]  # E1, in the order they were filed
    open_complaint: str | None

    @classmethod
    def of(cls, a: Appeal) -> AppealView:
        return cls(
            appeal=a.ref,
            version=a.version,
            order=a.order,
            state=a.state,
            reason=a.reason,
            rule=a.rule,
            opener=a.opener,
            side=a.side,
            agent=a.agent,
            outcome=a.outcome,
            refund_state=a.refund_state,
            refunds=[RefundView(**r) for r in a.refunds],
            top_up=a.top_up,
            evidence_count=len(a.evidence),
            proof_deadline=a.proof_deadline,
            freeze_deadline=a.freeze_deadline if not a.freeze_window_closed else None,
            opened_at=a.opened_at,
            closed_at=a.closed_at,
            resolved_by=a.resolved_by,
            clawback=a.clawback,
            recovered=a.recovered,
            clawback_state=a.clawback_state,
            complaints=list(a.complaints),
            open_complaint=a.complaint,
        )


class ComplaintView(View):
    complaint: str
    version: int
    appeal: str
    order: str
    complainant: str
    state: str
    decision: str | None
    compensation: PlainDecimal | None  # in `fiat`, owed by the platform (E4)
    fiat: str
    reviewer: str | None
    resolver: str | None  # the agent who resolved the appeal, who may not review it (E3)
    overdue: bool
    response_deadline: datetime
    evidence_count: int
    filed_at: datetime
    closed_at: datetime | None

    @classmethod
    def of(cls, c: Complaint) -> ComplaintView:
        return cls(
            complaint=c.ref,
            version=c.version,
            appeal=c.appeal,
            order=c.order,
            complainant=c.complainant,
            state=c.state,
            decision=c.decision,
            compensation=c.compensation,
            fiat=c.fiat,
            reviewer=c.reviewer,
            resolver=c.resolver,
            overdue=c.overdue,
            response_deadline=c.response_deadline,
            evidence_count=len(c.evidence),
            filed_at=c.filed_at,
            closed_at=c.closed_at,
        )


class SanctionView(View):
    kind: str
    since: datetime
    expires_at: datetime | None
    appeal: str | None
    severity: str | None


class TraderView(View):
    trader: str
    can_trade: bool
    sanctions: list[SanctionView]
    staff: str | None = None  # "agent" or "supervisor" when appointed to customer service

    @property
    def kinds(self) -> set[str]:
        return {s.kind for s in self.sanctions}

    @classmethod
    def of(cls, name: str, t: Trader | None, at: datetime) -> TraderView:
        active = [] if t is None else t.active(at)
        return cls(
            trader=name,
            staff=None if t is None else t.role,
            can_trade=not active,
            sanctions=[
                SanctionView(
                    kind=s["kind"],
                    since=s["since"],
                    expires_at=s["expires_at"],
                    appeal=s["appeal"],
                    severity=s["severity"],
                )
                for s in active
            ],
        )


class LedgerView(View):
    asset: str
    in_escrow: PlainDecimal
    released: PlainDecimal
    returned: PlainDecimal
    clawback_owed: PlainDecimal = Decimal(0)  # K4: open clawbacks less their recoveries
    clawback_recovered: PlainDecimal = Decimal(0)


class Recorded(View):
    """One event a command recorded."""

    stream: str  # order | appeal | trader | complaint | command
    ref: str
    version: int
    event: str
    rule: str | None
    actor: str
    at: datetime


class Outcome(View):
    command: str
    command_id: str | None
    recorded: list[Recorded]
    replayed: bool = False
