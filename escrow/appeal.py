"""The Appeal aggregate: a dispute on one order, handled by customer service (A1–A9, B, C, R).

Cross-aggregate effects (the order's state, sanctions) are decided by the command handler in
the same command and saved in the same transaction; this class only knows its own rules.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from escrow.actors import Actor
from escrow.errors import NotAuthorized, ValidationError
from escrow.machines import APPEAL, Situation
from escrow.order import Order
from escrow.policy import Policy
from escrow.recording import EscrowAggregate, evidence_entry
from escrow.vocabulary import (
    APPEAL_TERMINAL,
    BUYER_REASONS,
    REASON_RULE,
    SELLER_REASONS,
    AppealState,
    ClawbackState,
    Outcome,
    Reason,
    RefundState,
    Role,
    TopUp,
)


def issue_of(reason: str, opener: str) -> str:
    """A3: the issue an appeal is about; verbal abuse is per reporting trader."""
    return f"{reason}:{opener}" if reason == Reason.VERBAL_ABUSE else reason


class Appeal(EscrowAggregate):
    KIND = "appeal"
    TOPIC = "escrow:Appeal"

    if TYPE_CHECKING:  # see Order: the Opened event's apply assigns every field
        ref: str
        order: str
        buyer: str
        seller: str
        opener: str
        side: str
        reason: str
        issue: str
        description: str | None
        state: str
        outcome: str | None
        agent: str | None
        evidence: list[dict[str, Any]]
        refunds: list[dict[str, Any]]
        top_up: str | None
        proof_deadline: datetime | None
        proof_deadline_passed: bool
        freeze_deadline: datetime | None
        freeze_window_closed: bool
        opened_at: datetime
        closed_at: datetime | None
        resolved_by: str | None
        clawback: Decimal | None
        recovered: Decimal
        clawback_state: str | None
        complaint: str | None
        complaints: list[str]
        complaint_decided: bool

    class Event(EscrowAggregate.Event):
        TOPIC = "escrow:Appeal.Event"

    class Opened(EscrowAggregate.Created):
        TOPIC = "escrow:Appeal.Opened.v1"
        ref: str
        order: str
        buyer: str
        seller: str
        opener: str
        side: str
        reason: str
        issue: str
        description: str | None
        state: str
        freeze_deadline: datetime | None

        def apply(self, aggregate: Any) -> None:
            super().apply(aggregate)
            a: Appeal = aggregate
            a.ref, a.order, a.buyer, a.seller = self.ref, self.order, self.buyer, self.seller
            a.opener, a.side, a.reason, a.issue = self.opener, self.side, self.reason, self.issue
            a.description, a.state = self.description, self.state
            a.freeze_deadline, a.freeze_window_closed = self.freeze_deadline, False
            a.outcome = a.agent = a.top_up = a.proof_deadline = a.closed_at = None
            a.proof_deadline_passed = False
            a.resolved_by = a.clawback = a.clawback_state = a.complaint = None
            a.recovered, a.complaints, a.complaint_decided = Decimal(0), [], False
            a.evidence, a.refunds = [], []
            a.opened_at = self.timestamp

    class Moved(Event):
        TOPIC = "escrow:Appeal.Moved"
        state: str

        def apply(self, aggregate: Any) -> None:
            super().apply(aggregate)
            aggregate.state = self.state
            if self.state in APPEAL_TERMINAL:
                aggregate.closed_at = self.timestamp

    class ReviewStarted(Moved):
        TOPIC = "escrow:Appeal.ReviewStarted.v1"

        def apply(self, aggregate: Any) -> None:
            super().apply(aggregate)
            aggregate.agent = self.actor

    class EvidenceAdded(Event):
        TOPIC = "escrow:Appeal.EvidenceAdded.v1"
        description: str
        refs: list[str]

        def apply(self, aggregate: Any) -> None:
            super().apply(aggregate)
            entry = evidence_entry(self, self.description, list(self.refs))
            aggregate.evidence = [*aggregate.evidence, entry]

    class Cancelled(Moved):
        TOPIC = "escrow:Appeal.Cancelled.v1"

    class RefundRequested(Moved):
        TOPIC = "escrow:Appeal.RefundRequested.v1"
        amount: Decimal
        note: str | None

        def apply(self, aggregate: Any) -> None:
            super().apply(aggregate)
            refund = {
                "amount": self.amount,
                "state": RefundState.REQUESTED.value,
                "reported": None,
                "reference": None,
                "note": self.note,
            }
            aggregate.refunds = [*aggregate.refunds, refund]

    class RefundUpdated(Moved):
        """Base of the events that move the refund in progress."""

        TOPIC = "escrow:Appeal.RefundUpdated"
        refund_state: str

        def apply(self, aggregate: Any) -> None:
            super().apply(aggregate)
            current = dict(aggregate.refunds[-1], state=self.refund_state)
            aggregate.refunds = [*aggregate.refunds[:-1], current]

    class RefundReported(RefundUpdated):
        TOPIC = "escrow:Appeal.RefundReported.v1"
        amount: Decimal
        reference: str | None

        def apply(self, aggregate: Any) -> None:
            super().apply(aggregate)
            current = dict(aggregate.refunds[-1], reported=self.amount, reference=self.reference)
            aggregate.refunds = [*aggregate.refunds[:-1], current]

    class RefundConfirmed(RefundUpdated):
        TOPIC = "escrow:Appeal.RefundConfirmed.v1"
        amount: Decimal

    class RefundRefused(RefundUpdated):
        TOPIC = "escrow:Appeal.RefundRefused.v1"

    class PaymentProofRequested(Moved):
        TOPIC = "escrow:Appeal.PaymentProofRequested.v1"
        deadline: datetime

        def apply(self, aggregate: Any) -> None:
            super().apply(aggregate)
            aggregate.proof_deadline = self.deadline

    class PaymentProofSubmitted(Moved):
        TOPIC = "escrow:Appeal.PaymentProofSubmitted.v1"
        refs: list[str]

        def apply(self, aggregate: Any) -> None:
            super().apply(aggregate)
            aggregate.proof_deadline = None

    class TopUpMoved(Moved):
        TOPIC = "escrow:Appeal.TopUpMoved"
        top_up: str

        def apply(self, aggregate: Any) -> None:
            super().apply(aggregate)
            aggregate.top_up = self.top_up

    class TopUpAgreed(TopUpMoved):
        TOPIC = "escrow:Appeal.TopUpAgreed.v1"

    class TopUpRefused(TopUpMoved):
        TOPIC = "escrow:Appeal.TopUpRefused.v1"

    class TopUpConfirmed(TopUpMoved):
        TOPIC = "escrow:Appeal.TopUpConfirmed.v1"
        amount: Decimal

    class FreezeProofSubmitted(Moved):
        TOPIC = "escrow:Appeal.FreezeProofSubmitted.v1"
        refs: list[str]

    class FreezeWindowClosed(Moved):
        TOPIC = "escrow:Appeal.FreezeWindowClosed.v1"

        def apply(self, aggregate: Any) -> None:
            super().apply(aggregate)
            aggregate.freeze_window_closed = True

    class Resolved(Moved):
        TOPIC = "escrow:Appeal.Resolved.v1"
        outcome: str

        def apply(self, aggregate: Any) -> None:
            super().apply(aggregate)
            aggregate.outcome = self.outcome
            aggregate.resolved_by = self.actor

    class ProofDeadlinePassed(Resolved):
        TOPIC = "escrow:Appeal.ProofDeadlinePassed.v1"

        def apply(self, aggregate: Any) -> None:
            super().apply(aggregate)
            aggregate.proof_deadline_passed = True

    class ReversalConfirmed(Event):
        """K1: the clawback opens; `asset` is the order's, for the ledger (K4)."""

        TOPIC = "escrow:Appeal.ReversalConfirmed.v1"
        buyer: str  # who owes it, for the trader figures
        asset: str
        amount: Decimal

        def apply(self, aggregate: Any) -> None:
            super().apply(aggregate)
            aggregate.clawback = self.amount
            aggregate.clawback_state = ClawbackState.OPEN.value

    class RecoveryRecorded(Event):
        TOPIC = "escrow:Appeal.RecoveryRecorded.v1"
        asset: str
        amount: Decimal
        clawback_state: str

        def apply(self, aggregate: Any) -> None:
            super().apply(aggregate)
            aggregate.recovered = aggregate.recovered + self.amount
            aggregate.clawback_state = self.clawback_state

    class ClawbackWaived(Event):
        """K3: `outstanding` is what the buyer no longer owes (the clawback less recoveries)."""

        TOPIC = "escrow:Appeal.ClawbackWaived.v1"
        asset: str
        outstanding: Decimal

        def apply(self, aggregate: Any) -> None:
            super().apply(aggregate)
            aggregate.clawback_state = ClawbackState.WAIVED.value

    class ComplaintFiled(Event):
        TOPIC = "escrow:Appeal.ComplaintFiled.v1"
        complaint: str

        def apply(self, aggregate: Any) -> None:
            super().apply(aggregate)
            aggregate.complaint = self.complaint
            aggregate.complaints = [*aggregate.complaints, self.complaint]

    class ComplaintClosed(Event):
        """E2: a decided complaint closes the appeal to complaints; a withdrawn one does not."""

        TOPIC = "escrow:Appeal.ComplaintClosed.v1"
        complaint: str
        decided: bool

        def apply(self, aggregate: Any) -> None:
            super().apply(aggregate)
            aggregate.complaint = None
            aggregate.complaint_decided = aggregate.complaint_decided or self.decided

    # --- reading --------------------------------------------------------------------------

    @property
    def is_open(self) -> bool:
        return self.state not in APPEAL_TERMINAL

    @property
    def refund_state(self) -> str | None:
        return self.refunds[-1]["state"] if self.refunds else None

    @property
    def refund_pending(self) -> bool:
        return self.refund_state in (RefundState.REQUESTED, RefundState.REPORTED)

    def requested_refunds(self) -> Decimal:
        """R3: what this appeal asked the seller to refund, refused requests excluded."""
        return sum(
            (r["amount"] for r in self.refunds if r["state"] != RefundState.REFUSED), Decimal(0)
        )

    @property
    def rule(self) -> str:
        return REASON_RULE[(self.side, self.reason)]

    def roles_of(self, actor: Actor) -> set[str]:
        """Parties first, as on the order: an agent never handles an appeal they are party to."""
        if actor.is_system:
            return {Role.SYSTEM}
        roles: set[str] = {
            r
            for r, name in ((Role.BUYER, self.buyer), (Role.SELLER, self.seller))
            if name == actor.name
        }
        if not roles:
            return {Role.AGENT} if actor.is_agent else set()
        if actor.name == self.opener:
            roles.add(Role.OPENER)
        return roles

    def authorize(self, trigger: str, actor: Actor, rule: str = "A9") -> None:
        if not APPEAL.who[trigger] & self.roles_of(actor):
            raise NotAuthorized(f"{actor.name} may not {trigger} on appeal {self.ref}", rule)

    @property
    def clawback_owed(self) -> Decimal:
        """K4: what the buyer still owes while the clawback is open."""
        if self.clawback is None or self.clawback_state != ClawbackState.OPEN:
            return Decimal(0)
        return self.clawback - self.recovered

    # --- decisions ------------------------------------------------------------------------

    @classmethod
    def open(
        cls,
        *,
        ref: str,
        order: Order,
        by: Actor,
        reason: str,
        description: str | None,
        policy: Policy,
        at: datetime,
    ) -> Appeal:
        """A6: a party opens an appeal for one of its own side's reasons."""
        roles = order.roles_of(by)
        order.authorize("open_appeal", by, roles)
        side = Role.BUYER if Role.BUYER in roles else Role.SELLER
        if reason not in (BUYER_REASONS if side == Role.BUYER else SELLER_REASONS):
            raise NotAuthorized(f"the {side} cannot open an appeal for {reason}", "A6")
        issue = issue_of(reason, by.name)
        order.check_appeal(issue, at, reason)
        frozen = reason == Reason.BANK_ACCOUNT_FROZEN
        return cls._start(
            cls.Opened,
            actor=by.name,
            rule=REASON_RULE[(side, reason)],
            at=at,
            ref=ref,
            order=order.ref,
            buyer=order.buyer,
            seller=order.seller,
            opener=by.name,
            side=side.value,
            reason=reason,
            issue=issue,
            description=description,
            state=(AppealState.AWAITING_FREEZE_PROOF if frozen else AppealState.OPEN).value,
            freeze_deadline=at + policy.freeze_proof_window if frozen else None,
        )

    def _step(self, trigger: str, by: Actor, situation: Situation) -> tuple[str, str]:
        self.authorize(trigger, by)
        decision = APPEAL.decide(trigger, self.state, situation)
        return decision.dest, decision.rule

    def start_review(self, by: Actor, order: Order, at: datetime) -> None:
        state, rule = self._step("start_review", by, Situation(order, at, self))
        self._record(self.ReviewStarted, actor=by.name, rule=rule, at=at, state=state)

    def add_evidence(
        self, by: Actor, description: str, refs: list[str], order: Order, at: datetime
    ) -> None:
        _, rule = self._step("add_evidence", by, Situation(order, at, self))
        self._record(
            self.EvidenceAdded, actor=by.name, rule=rule, at=at, description=description, refs=refs
        )

    def cancel(self, by: Actor, order: Order, at: datetime) -> None:
        state, rule = self._step("cancel_appeal", by, Situation(order, at, self))
        self._record(self.Cancelled, actor=by.name, rule=rule, at=at, state=state)

    def request_refund(
        self,
        by: Actor,
        amount: Decimal,
        note: str | None,
        order: Order,
        refunds_total: Decimal,
        at: datetime,
    ) -> None:
        situation = Situation(order, at, self, amount=amount, refunds_total=refunds_total)
        state, rule = self._step("request_refund", by, situation)
        self._record(
            self.RefundRequested,
            actor=by.name,
            rule=rule,
            at=at,
            state=state,
            amount=amount,
            note=note,
        )

    def report_refund(
        self, by: Actor, amount: Decimal, reference: str | None, order: Order, at: datetime
    ) -> None:
        state, rule = self._step("report_refund", by, Situation(order, at, self))
        self._record(
            self.RefundReported,
            actor=by.name,
            rule=rule,
            at=at,
            state=state,
            refund_state=RefundState.REPORTED.value,
            amount=amount,
            reference=reference,
        )

    def confirm_refund(self, by: Actor, order: Order, at: datetime) -> None:
        state, rule = self._step("confirm_refund", by, Situation(order, at, self))
        current = self.refunds[-1]
        amount = current["amount"] if current["reported"] is None else current["reported"]
        self._record(
            self.RefundConfirmed,
            actor=by.name,
            rule=rule,
            at=at,
            state=state,
            refund_state=RefundState.CONFIRMED.value,
            amount=amount,
        )

    def refuse_refund(self, by: Actor, order: Order, at: datetime) -> None:
        state, rule = self._step("refuse_refund", by, Situation(order, at, self))
        self._record(
            self.RefundRefused,
            actor=by.name,
            rule=rule,
            at=at,
            state=state,
            refund_state=RefundState.REFUSED.value,
        )

    def request_payment_proof(self, by: Actor, order: Order, policy: Policy, at: datetime) -> None:
        state, rule = self._step("request_payment_proof", by, Situation(order, at, self))
        self._record(
            self.PaymentProofRequested,
            actor=by.name,
            rule=rule,
            at=at,
            state=state,
            deadline=at + policy.payment_proof_deadline,
        )

    def submit_payment_proof(self, by: Actor, refs: list[str], order: Order, at: datetime) -> None:
        state, rule = self._step("submit_payment_proof", by, Situation(order, at, self))
        self._record(
            self.PaymentProofSubmitted, actor=by.name, rule=rule, at=at, state=state, refs=refs
        )

    def expire_payment_proof(self, by: Actor, order: Order, at: datetime) -> str:
        """R5: the deadline passed first; returns the outcome the order must follow."""
        state, rule = self._step("expire_payment_proof", by, Situation(order, at, self))
        outcome = Outcome.NONE if order.is_terminal else Outcome.CANCEL
        self._record(
            self.ProofDeadlinePassed,
            actor=by.name,
            rule=rule,
            at=at,
            state=state,
            outcome=outcome.value,
        )
        return outcome.value

    def agree_top_up(self, by: Actor, order: Order, at: datetime) -> None:
        state, rule = self._step("agree_top_up", by, Situation(order, at, self))
        self._record(
            self.TopUpAgreed,
            actor=by.name,
            rule=rule,
            at=at,
            state=state,
            top_up=TopUp.AGREED.value,
        )

    def refuse_top_up(self, by: Actor, order: Order, at: datetime) -> None:
        state, rule = self._step("refuse_top_up", by, Situation(order, at, self))
        self._record(
            self.TopUpRefused,
            actor=by.name,
            rule=rule,
            at=at,
            state=state,
            top_up=TopUp.REFUSED.value,
        )

    def confirm_top_up(
        self, by: Actor, amount: Decimal | None, order: Order, at: datetime
    ) -> Decimal:
        """R6: the amount defaults to the shortfall; it is added to the order's paid amount."""
        state, rule = self._step("confirm_top_up", by, Situation(order, at, self))
        if amount is None:
            amount = order.fiat_amount - (order.paid_amount or Decimal(0))
            if amount <= 0:
                raise ValidationError("no shortfall to top up: give the amount received", "R6")
        self._record(
            self.TopUpConfirmed,
            actor=by.name,
            rule=rule,
            at=at,
            state=state,
            top_up=TopUp.CONFIRMED.value,
            amount=amount,
        )
        return amount

    def submit_freeze_proof(self, by: Actor, refs: list[str], order: Order, at: datetime) -> None:
        state, rule = self._step("submit_freeze_proof", by, Situation(order, at, self))
        self._record(
            self.FreezeProofSubmitted, actor=by.name, rule=rule, at=at, state=state, refs=refs
        )

    def close_freeze_window(self, by: Actor, order: Order, at: datetime) -> None:
        state, rule = self._step("close_freeze_window", by, Situation(order, at, self))
        self._record(self.FreezeWindowClosed, actor=by.name, rule=rule, at=at, state=state)

    def resolve(self, by: Actor, outcome: str | None, order: Order, at: datetime) -> str:
        """A1/A2: the outcome is required for a live order (but verbal abuse), absent otherwise.
        A wrong outcome is a validation_error, which scenarios.md checks before not_authorized;
        `_step` authorizes right after. An appeal already closed is refused as such
        (invalid_state) whatever the outcome: the agent who lost a race to resolve it must
        learn that it is resolved, not be told to drop an outcome that cannot help."""
        if self.is_open and order.is_terminal and outcome is not None:
            raise ValidationError(
                f"order {order.ref} is {order.state}: resolve without an outcome", "A2"
            )
        if (
            self.is_open
            and not order.is_terminal
            and outcome is None
            and self.reason != Reason.VERBAL_ABUSE
        ):
            raise ValidationError("an outcome (release or cancel) is required", "A1")
        final = outcome or Outcome.NONE.value
        state, rule = self._step("resolve_appeal", by, Situation(order, at, self, outcome=final))
        self._record(self.Resolved, actor=by.name, rule=rule, at=at, state=state, outcome=final)
        return final

    # --- after the trade: reversals (C6, K1–K3) and complaints (E1, E2) -------------------

    def confirm_reversal(self, by: Actor, amount: Decimal, order: Order, at: datetime) -> None:
        """K1: the buyer owes `amount` of the asset back; the S4 is the caller's
        (escrow.consequences), since it lands on another aggregate."""
        _, rule = self._step("confirm_reversal", by, Situation(order, at, self, amount=amount))
        self._record(
            self.ReversalConfirmed,
            actor=by.name,
            rule=rule,
            at=at,
            buyer=self.buyer,
            asset=order.asset,
            amount=amount,
        )

    def record_recovery(self, by: Actor, amount: Decimal, order: Order, at: datetime) -> None:
        _, rule = self._step("record_recovery", by, Situation(order, at, self, amount=amount))
        assert self.clawback is not None  # CLAWBACK_OPEN held
        done = self.recovered + amount == self.clawback
        self._record(
            self.RecoveryRecorded,
            actor=by.name,
            rule=rule,
            at=at,
            asset=order.asset,
            amount=amount,
            clawback_state=(ClawbackState.RECOVERED if done else ClawbackState.OPEN).value,
        )

    def waive_clawback(self, by: Actor, order: Order, at: datetime) -> None:
        _, rule = self._step("waive_clawback", by, Situation(order, at, self))
        self._record(
            self.ClawbackWaived,
            actor=by.name,
            rule=rule,
            at=at,
            asset=order.asset,
            outstanding=self.clawback_owed,
        )

    def complaint_filed(
        self, complaint: str, by: Actor, order: Order, window_end: datetime | None, at: datetime
    ) -> None:
        """E1/E2: only a party, only about a resolved appeal, one live complaint at a time,
        none after a decided one, within the window after the resolution."""
        self.authorize("file_complaint", by, "E1")
        situation = Situation(order, at, self, deadline=window_end)
        _, rule = self._step("file_complaint", by, situation)
        self._record(self.ComplaintFiled, actor=by.name, rule=rule, at=at, complaint=complaint)

    def complaint_closed(self, complaint: str, decided: bool, by: Actor, at: datetime) -> None:
        """Authorized by the complaint's own command: the appeal only keeps count (E2)."""
        rule = APPEAL.decide("complaint_closed", self.state, Situation(None, at, self)).rule
        self._record(
            self.ComplaintClosed,
            actor=by.name,
            rule=rule,
            at=at,
            complaint=complaint,
            decided=decided,
        )
