"""The Order aggregate: one P2P trade and its escrow (rules O1–O7, and A1–A7 as they touch it).

Command methods ask the ORDER rulebook and record one past-tense event; event `apply` methods
only assign, so replaying old history never re-runs a rule.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from escrow.actors import Actor
from escrow.errors import NotAuthorized
from escrow.machines import ORDER, Situation
from escrow.money import exact_product
from escrow.policy import Policy
from escrow.recording import EscrowAggregate
from escrow.vocabulary import ORDER_TERMINAL, OrderState, Role


class Order(EscrowAggregate):
    KIND = "order"
    TOPIC = "escrow:Order"

    # Declared for type checkers only: run-time annotations would turn the aggregate into a
    # dataclass with a required __init__; the Created event's apply assigns every field.
    if TYPE_CHECKING:
        ref: str
        seller: str
        buyer: str
        asset: str
        amount: Decimal
        price: Decimal
        fiat: str
        fiat_amount: Decimal
        payment_method: str
        instant: bool
        reference_price: Decimal
        payment_deadline: datetime
        appeal_window: timedelta
        price_deviation_limit: Decimal
        state: str
        paid_amount: Decimal | None
        paid_at: datetime | None
        closed_at: datetime | None
        cancel_reason: str | None
        open_appeal: str | None
        appeals: list[str]
        resolved_issues: list[str]
        locked: Decimal
        released: Decimal
        returned: Decimal

    class Event(EscrowAggregate.Event):
        TOPIC = "escrow:Order.Event"

    class Created(EscrowAggregate.Created):
        TOPIC = "escrow:Order.Created.v1"
        ref: str
        seller: str
        buyer: str
        asset: str
        amount: Decimal
        price: Decimal
        fiat: str
        fiat_amount: Decimal
        payment_method: str
        instant: bool
        reference_price: Decimal
        payment_deadline: datetime
        appeal_window_seconds: int
        price_deviation_limit: Decimal
        state: str

        def apply(self, aggregate: Any) -> None:
            super().apply(aggregate)
            order: Order = aggregate
            order.ref = self.ref
            order.seller, order.buyer = self.seller, self.buyer
            order.asset, order.amount, order.price = self.asset, self.amount, self.price
            order.fiat, order.fiat_amount = self.fiat, self.fiat_amount
            order.payment_method, order.instant = self.payment_method, self.instant
            order.reference_price = self.reference_price
            order.payment_deadline = self.payment_deadline
            order.appeal_window = timedelta(seconds=self.appeal_window_seconds)
            order.price_deviation_limit = self.price_deviation_limit
            order.state = self.state
            order.paid_amount = order.paid_at = order.closed_at = None
            order.cancel_reason = order.open_appeal = None
            order.appeals, order.resolved_issues = [], []
            order.locked, order.released, order.returned = self.amount, Decimal(0), Decimal(0)

    class Moved(Event):
        """Base of the events that carry the order's resulting state."""

        TOPIC = "escrow:Order.Moved"
        state: str

        def apply(self, aggregate: Any) -> None:
            super().apply(aggregate)
            order: Order = aggregate
            order.state = self.state
            if self.state in ORDER_TERMINAL and order.closed_at is None:
                order.closed_at = self.timestamp
                if self.state == OrderState.COMPLETED:
                    order.released = order.amount
                else:
                    order.returned = order.amount

    class MarkedPaid(Moved):
        TOPIC = "escrow:Order.MarkedPaid.v1"
        paid_amount: Decimal

        def apply(self, aggregate: Any) -> None:
            super().apply(aggregate)
            aggregate.paid_amount = self.paid_amount
            aggregate.paid_at = self.timestamp

    class Cancelled(Moved):
        TOPIC = "escrow:Order.Cancelled.v1"
        reason: str

        def apply(self, aggregate: Any) -> None:
            super().apply(aggregate)
            aggregate.cancel_reason = self.reason

    class Released(Moved):
        TOPIC = "escrow:Order.Released.v1"

    class AppealOpened(Moved):
        """Schema version 2 records the appeal's reason on the order's stream too, so that the
        order's timeline and the events other services receive say why the order is in
        appeal without reading the appeal's stream. Version 1 events (stored before) have
        none: upcast to `reason=None`, "not recorded here" (the appeal's own stream has it).
        The topic names the event type and never changes; the schema version is stored in
        the event's state (`class_version`), which the library upcasts on reading."""

        TOPIC = "escrow:Order.AppealOpened.v1"
        class_version = 2
        appeal: str
        reason: str | None

        @staticmethod
        def upcast_v1_v2(state: dict[str, Any]) -> None:
            state["reason"] = None

        def apply(self, aggregate: Any) -> None:
            super().apply(aggregate)
            aggregate.open_appeal = self.appeal
            aggregate.appeals = [*aggregate.appeals, self.appeal]

    class AppealCancelled(Moved):
        TOPIC = "escrow:Order.AppealCancelled.v1"
        appeal: str

        def apply(self, aggregate: Any) -> None:
            super().apply(aggregate)
            aggregate.open_appeal = None

    class AppealResolved(Moved):
        TOPIC = "escrow:Order.AppealResolved.v1"
        appeal: str
        issue: str
        outcome: str

        def apply(self, aggregate: Any) -> None:
            super().apply(aggregate)
            aggregate.open_appeal = None
            aggregate.resolved_issues = [*aggregate.resolved_issues, self.issue]

    class TopUpConfirmed(Event):
        TOPIC = "escrow:Order.TopUpConfirmed.v1"
        appeal: str
        amount: Decimal

        def apply(self, aggregate: Any) -> None:
            super().apply(aggregate)
            aggregate.paid_amount = (aggregate.paid_amount or Decimal(0)) + self.amount

    # --- decisions ------------------------------------------------------------------------

    @classmethod
    def create(
        cls,
        *,
        ref: str,
        seller: str,
        buyer: str,
        asset: str,
        amount: Decimal,
        price: Decimal,
        fiat: str,
        payment_method: str,
        instant: bool,
        reference_price: Decimal,
        payment_window: timedelta,
        policy: Policy,
        at: datetime,
    ) -> Order:
        """O1: the platform opens the order for the parties and locks the seller's crypto."""
        return cls._start(
            cls.Created,
            actor="platform",
            rule="O1",
            at=at,
            ref=ref,
            seller=seller,
            buyer=buyer,
            asset=asset,
            amount=amount,
            price=price,
            fiat=fiat,
            fiat_amount=exact_product(amount, price),
            payment_method=payment_method,
            instant=instant,
            reference_price=reference_price,
            payment_deadline=at + payment_window,
            appeal_window_seconds=int(policy.appeal_window_after_close.total_seconds()),
            price_deviation_limit=policy.price_deviation_limit,
            state=OrderState.AWAITING_PAYMENT.value,
        )

    @property
    def appeal_deadline(self) -> datetime:
        """A6: appeals on a closed order are accepted until this moment."""
        assert self.closed_at is not None
        return self.closed_at + self.appeal_window

    @property
    def is_terminal(self) -> bool:
        return self.state in ORDER_TERMINAL

    def roles_of(self, actor: Actor) -> set[str]:
        """A party acts as that party, even if appointed to customer service since (nobody
        handles as an agent an order they are party to); anyone else is an agent or nothing."""
        if actor.is_system:
            return {Role.SYSTEM}
        parties: set[str] = {
            r
            for r, name in ((Role.BUYER, self.buyer), (Role.SELLER, self.seller))
            if name == actor.name
        }
        if parties:
            return parties
        return {Role.AGENT} if actor.is_agent else set()

    def authorize(self, trigger: str, actor: Actor, roles: set[str] | None = None) -> None:
        """O6/A9: the actor's role must be one the rulebook names for this command."""
        if not ORDER.who[trigger] & (roles if roles is not None else self.roles_of(actor)):
            raise NotAuthorized(f"{actor.name} may not {trigger} order {self.ref}", "O6")

    def mark_paid(self, by: Actor, paid_amount: Decimal | None, at: datetime) -> None:
        self.authorize("mark_paid", by)
        step = ORDER.decide("mark_paid", self.state, Situation(order=self, now=at))
        self._record(
            self.MarkedPaid,
            actor=by.name,
            rule=step.rule,
            at=at,
            state=step.dest,
            paid_amount=self.fiat_amount if paid_amount is None else paid_amount,
        )

    def cancel(self, by: Actor, at: datetime) -> None:
        self.authorize("cancel_order", by)
        step = ORDER.decide("cancel_order", self.state, Situation(order=self, now=at))
        self._record(
            self.Cancelled,
            actor=by.name,
            rule=step.rule,
            at=at,
            state=step.dest,
            reason="buyer_cancelled",
        )

    def expire(self, by: Actor, at: datetime) -> None:
        step = ORDER.decide("expire_payment_window", self.state, Situation(order=self, now=at))
        self._record(
            self.Cancelled,
            actor=by.name,
            rule=step.rule,
            at=at,
            state=step.dest,
            reason="payment_window_expired",
        )

    def release(self, by: Actor, at: datetime) -> None:
        self.authorize("release", by)
        step = ORDER.decide("release", self.state, Situation(order=self, now=at))
        self._record(self.Released, actor=by.name, rule=step.rule, at=at, state=step.dest)

    def check_appeal(self, issue: str, at: datetime, reason: str) -> str:
        """A2/A3/A6/A7/C6: where an appeal on this issue would take the order, or a refusal."""
        situation = Situation(order=self, now=at, issue=issue, reason=reason)
        return ORDER.decide("open_appeal", self.state, situation).dest

    def appeal_opened(self, appeal: str, by: Actor, issue: str, reason: str, at: datetime) -> None:
        situation = Situation(order=self, now=at, issue=issue, reason=reason)
        step = ORDER.decide("open_appeal", self.state, situation)
        self._record(
            self.AppealOpened,
            actor=by.name,
            rule=step.rule,
            at=at,
            state=step.dest,
            appeal=appeal,
            reason=reason,
        )

    def appeal_cancelled(self, appeal: str, by: Actor, at: datetime) -> None:
        step = ORDER.decide("appeal_cancelled", self.state, Situation(order=self, now=at))
        self._record(
            self.AppealCancelled,
            actor=by.name,
            rule=step.rule,
            at=at,
            state=step.dest,
            appeal=appeal,
        )

    def appeal_resolved(
        self, appeal: str, issue: str, outcome: str, by: Actor, at: datetime
    ) -> None:
        step = ORDER.decide(f"resolved_{outcome}", self.state, Situation(order=self, now=at))
        self._record(
            self.AppealResolved,
            actor=by.name,
            rule=step.rule,
            at=at,
            state=step.dest,
            appeal=appeal,
            issue=issue,
            outcome=outcome,
        )

    def top_up_confirmed(self, appeal: str, amount: Decimal, by: Actor, at: datetime) -> None:
        step = ORDER.decide("top_up_confirmed", self.state, Situation(order=self, now=at))
        self._record(
            self.TopUpConfirmed, actor=by.name, rule=step.rule, at=at, appeal=appeal, amount=amount
        )
