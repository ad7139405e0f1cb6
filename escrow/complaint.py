"""The Complaint aggregate: a party's formal complaint about how CS resolved an appeal (E1–E6).

A complaint is reviewed by a supervisor other than the agent who resolved the appeal (four
eyes), so the resolver's name is copied in when it is filed. What a decision does elsewhere (the
appeal closed to complaints, sanctions lifted) is decided in `escrow.consequences` and saved in
the same transaction.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from escrow.actors import Actor
from escrow.errors import NotAuthorized
from escrow.machines import COMPLAINT, Situation
from escrow.recording import EscrowAggregate, evidence_entry
from escrow.vocabulary import COMPLAINT_TERMINAL, ComplaintState, Decision, Role

if TYPE_CHECKING:
    from escrow.appeal import Appeal
    from escrow.order import Order


class Complaint(EscrowAggregate):
    KIND = "complaint"
    TOPIC = "escrow:Complaint"

    if TYPE_CHECKING:  # see Order: the Filed event's apply assigns every field
        ref: str
        appeal: str
        order: str
        complainant: str
        buyer: str
        seller: str
        resolver: str | None
        fiat: str
        fiat_amount: Decimal
        statement: str
        state: str
        decision: str | None
        compensation: Decimal | None
        reviewer: str | None
        overdue: bool
        response_deadline: datetime
        evidence: list[dict[str, Any]]
        filed_at: datetime
        closed_at: datetime | None

    class Event(EscrowAggregate.Event):
        TOPIC = "escrow:Complaint.Event"

    class Filed(EscrowAggregate.Created):
        TOPIC = "escrow:Complaint.Filed.v1"
        ref: str
        appeal: str
        order: str
        complainant: str
        buyer: str
        seller: str
        resolver: str | None
        fiat: str
        fiat_amount: Decimal
        statement: str
        refs: list[str]
        state: str
        response_deadline: datetime

        def apply(self, aggregate: Any) -> None:
            super().apply(aggregate)
            c: Complaint = aggregate
            c.ref, c.appeal, c.order = self.ref, self.appeal, self.order
            c.complainant, c.buyer, c.seller = self.complainant, self.buyer, self.seller
            c.resolver, c.fiat, c.fiat_amount = self.resolver, self.fiat, self.fiat_amount
            c.statement, c.state = self.statement, self.state
            c.response_deadline = self.response_deadline
            c.decision = c.compensation = c.reviewer = c.closed_at = None
            c.overdue = False
            c.evidence = [evidence_entry(self, self.statement, list(self.refs))]
            c.filed_at = self.timestamp

    class Moved(Event):
        TOPIC = "escrow:Complaint.Moved"
        state: str

        def apply(self, aggregate: Any) -> None:
            super().apply(aggregate)
            aggregate.state = self.state
            if self.state in COMPLAINT_TERMINAL:
                aggregate.closed_at = self.timestamp

    class ReviewStarted(Moved):
        TOPIC = "escrow:Complaint.ReviewStarted.v1"

        def apply(self, aggregate: Any) -> None:
            super().apply(aggregate)
            aggregate.reviewer = self.actor

    class Decided(Moved):
        TOPIC = "escrow:Complaint.Decided.v1"
        complainant: str  # who won or lost, for the trader figures
        decision: str
        compensation: Decimal | None

        def apply(self, aggregate: Any) -> None:
            super().apply(aggregate)
            aggregate.decision = self.decision
            aggregate.compensation = self.compensation

    class Withdrawn(Moved):
        TOPIC = "escrow:Complaint.Withdrawn.v1"

    class EvidenceAdded(Event):
        TOPIC = "escrow:Complaint.EvidenceAdded.v1"
        description: str
        refs: list[str]

        def apply(self, aggregate: Any) -> None:
            super().apply(aggregate)
            entry = evidence_entry(self, self.description, list(self.refs))
            aggregate.evidence = [*aggregate.evidence, entry]

    class MarkedOverdue(Event):
        TOPIC = "escrow:Complaint.MarkedOverdue.v1"

        def apply(self, aggregate: Any) -> None:
            super().apply(aggregate)
            aggregate.overdue = True

    # --- reading --------------------------------------------------------------------------

    @property
    def is_live(self) -> bool:
        return self.state not in COMPLAINT_TERMINAL

    def roles_of(self, actor: Actor) -> set[str]:
        if actor.is_system:
            return {Role.SYSTEM}
        roles: set[str] = {
            r
            for r, name in ((Role.BUYER, self.buyer), (Role.SELLER, self.seller))
            if name == actor.name
        }
        if not roles:  # parties first: nobody reviews a complaint about their own order
            # E3: four eyes: the agent who resolved the appeal never reviews its complaint.
            fresh = actor.is_supervisor and actor.name != self.resolver
            return {Role.SUPERVISOR} if fresh else set()
        if actor.name == self.complainant:
            roles.add(Role.COMPLAINANT)
        return roles

    def _step(self, trigger: str, by: Actor, situation: Situation) -> tuple[str, str]:
        if not COMPLAINT.who[trigger] & self.roles_of(by):
            raise NotAuthorized(f"{by.name} may not {trigger} on complaint {self.ref}", "E3")
        decision = COMPLAINT.decide(trigger, self.state, situation)
        return decision.dest, decision.rule

    # --- decisions ------------------------------------------------------------------------

    @classmethod
    def file(
        cls,
        *,
        ref: str,
        appeal: Appeal,
        order: Order,
        by: Actor,
        statement: str,
        refs: list[str],
        response_deadline: datetime,
        at: datetime,
    ) -> Complaint:
        """E1: the appeal has accepted the filing (`Appeal.complaint_filed`) before this."""
        return cls._start(
            cls.Filed,
            actor=by.name,
            rule="E1",
            at=at,
            ref=ref,
            appeal=appeal.ref,
            order=order.ref,
            complainant=by.name,
            buyer=order.buyer,
            seller=order.seller,
            resolver=appeal.resolved_by,
            fiat=order.fiat,
            fiat_amount=order.fiat_amount,
            statement=statement,
            refs=refs,
            state=ComplaintState.FILED.value,
            response_deadline=response_deadline,
        )

    def start_review(self, by: Actor, at: datetime) -> None:
        state, rule = self._step("start_complaint_review", by, Situation(None, at, complaint=self))
        self._record(self.ReviewStarted, actor=by.name, rule=rule, at=at, state=state)

    def decide(self, by: Actor, decision: str, compensation: Decimal | None, at: datetime) -> None:
        """E3/E4: `upheld` lets the resolution stand; `overturned` may grant compensation."""
        situation = Situation(None, at, amount=compensation, complaint=self)
        state, rule = self._step(f"decide_{decision}", by, situation)
        self._record(
            self.Decided,
            actor=by.name,
            rule=rule,
            at=at,
            state=state,
            complainant=self.complainant,
            decision=decision,
            compensation=compensation if decision == Decision.OVERTURNED else None,
        )

    def withdraw(self, by: Actor, at: datetime) -> None:
        state, rule = self._step("withdraw_complaint", by, Situation(None, at, complaint=self))
        self._record(self.Withdrawn, actor=by.name, rule=rule, at=at, state=state)

    def add_evidence(self, by: Actor, description: str, refs: list[str], at: datetime) -> None:
        situation = Situation(None, at, complaint=self)
        _, rule = self._step("add_complaint_evidence", by, situation)
        self._record(
            self.EvidenceAdded, actor=by.name, rule=rule, at=at, description=description, refs=refs
        )

    def mark_overdue(self, by: Actor, at: datetime) -> None:
        _, rule = self._step("mark_overdue", by, Situation(None, at, complaint=self))
        self._record(self.MarkedOverdue, actor=by.name, rule=rule, at=at)
