"""What a caller may ask: aggregates as they are now, what an actor may do next, and the
read models. Aggregate queries read their stream (the authority); read-model queries first pull
any event another process recorded since this engine last projected, so they never answer from
stale tables."""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from eventsourcing.application import AggregateNotFoundError

from escrow.appeal import Appeal
from escrow.application import project
from escrow.clock import Clock, bounded
from escrow.commands.bootstrap import Wiring, guarded
from escrow.commands.execution import CommandRunner
from escrow.complaint import Complaint
from escrow.durations import MAX_DURATION, bounded_duration
from escrow.errors import NotFound, ValidationError
from escrow.machines import APPEAL, COMPLAINT, ORDER, Situation
from escrow.order import Order
from escrow.projections import appeal_queue as queue_model
from escrow.projections import orders as orders_model
from escrow.projections import traders as traders_model
from escrow.projections.appeal_queue import ComplaintQueueItem, QueueItem, complaint_query
from escrow.projections.ledger import LedgerLine, ledger_lines, ledgers
from escrow.projections.orders import OrderRow
from escrow.projections.traders import TraderStats
from escrow.recording import EscrowAggregate, stream_id
from escrow.trader import Trader
from escrow.views import AppealView, ComplaintView, LedgerView, OrderView, TraderView

MAX_LIMIT = 1_000_000  # rows a read-model query may ask for


def _text(value: Any, field: str, optional: bool = True) -> Any:
    """A string argument (an id, a filter), or a validation error naming it: anything else
    would reach the database driver and fail there, as a store error it is not."""
    if (value is not None or not optional) and not isinstance(value, str):
        raise ValidationError(f"{field} is a string, not {type(value).__name__}")
    return value


def _limit(value: Any, field: str = "limit") -> Any:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_LIMIT:
        raise ValidationError(f"{field} is a whole number from 1 to {MAX_LIMIT}")
    return value


def _moment(value: datetime | None, field: str = "at") -> datetime | None:
    return None if value is None else bounded(value, field)


def _age(value: timedelta | str | None) -> timedelta | None:
    if isinstance(value, str):
        try:
            value = bounded_duration(value)
        except ValueError as e:
            raise ValidationError(f"older_than: {e}") from None
    if value is None:
        return None
    if not isinstance(value, timedelta) or not timedelta(0) <= value <= MAX_DURATION:
        raise ValidationError(f"older_than is a duration from 0 to {MAX_DURATION.days}d")
    return value


DECISIONS = {"decide_upheld": "decide_complaint", "decide_overturned": "decide_complaint"}


class Queries:
    def __init__(self, wiring: Wiring, runner: CommandRunner, clock: Clock) -> None:
        self.wiring = wiring
        self.runner = runner
        self.clock = clock
        # What embedding code and the tools reach for, named as they always were.
        self.app = wiring.app
        self.read = wiring.read
        self.projector = wiring.projector
        self.read_models = wiring.read_models
        self.policy = runner.policy
        self.agents = runner.agents

    def _load(self, cls: type[EscrowAggregate], ref: str, version: int | None = None) -> Any:
        _text(ref, cls.KIND, optional=False)
        try:
            return self.app.repository.get(
                stream_id(cls.KIND, ref), version=version, projector_func=project
            )
        except AggregateNotFoundError:
            raise NotFound(f"no {cls.KIND} {ref!r}") from None

    @guarded
    def order(self, ref: str) -> OrderView:
        return OrderView.of(self._load(Order, ref))

    @guarded
    def appeal(self, ref: str) -> AppealView:
        return AppealView.of(self._load(Appeal, ref))

    @guarded
    def complaint(self, ref: str) -> ComplaintView:
        return ComplaintView.of(self._load(Complaint, ref))

    @guarded
    def trader(self, name: str, at: datetime | None = None) -> TraderView:
        at = _moment(at)
        try:
            found: Trader | None = self._load(Trader, name)
        except NotFound:
            found = None
        return TraderView.of(name, found, at or self.clock.now())

    @guarded
    def ledger(self, asset: str) -> LedgerView:
        """Escrow and clawback totals of one asset (zero for an asset never traded)."""
        _text(asset, "asset", optional=False)
        self.projector.catch_up()
        found = ledgers(self.read, asset)
        zero = Decimal(0)
        return (
            found[0]
            if found
            else LedgerView(asset=asset, in_escrow=zero, released=zero, returned=zero)
        )

    @guarded
    def allowed(
        self,
        actor: str,
        *,
        order: str | None = None,
        appeal: str | None = None,
        complaint: str | None = None,
    ) -> list[str]:
        """What `actor` may do now on this order, appeal or complaint: the commands the
        rulebook would accept from its current state (amount limits are checked when the
        command comes)."""
        _text(actor, "actor", optional=False)
        unit = self.runner.unit(self.clock.now())
        who = unit.actor(actor)
        now = self.clock.now()
        if complaint is not None:
            c = self._load(Complaint, complaint)
            situation = Situation(None, now, complaint=c)
            found = [
                t
                for t in COMPLAINT.triggers(c.roles_of(who))
                if t != "mark_overdue" and COMPLAINT.allows(t, c.state, situation)
            ]
            # The two decisions are one command, `decide_complaint`, with its `decision`.
            return list(dict.fromkeys(DECISIONS.get(t, t) for t in found))
        if appeal is not None:
            a = self._load(Appeal, appeal)
            o = self._load(Order, a.order)
            roles = a.roles_of(who)
            window = None if a.closed_at is None else a.closed_at + self.policy.complaint_window
            situation = Situation(o, now, a, outcome=None, deadline=window)
            return [t for t in APPEAL.triggers(roles) if APPEAL.allows(t, a.state, situation)]
        if order is None:
            raise ValidationError("name an order or an appeal")
        o = self._load(Order, order)
        roles = o.roles_of(who)
        commands = {"mark_paid", "cancel_order", "release", "open_appeal"}
        situation = Situation(o, now, issue="")
        return [
            t
            for t in ORDER.triggers(roles)
            if t in commands and ORDER.allows(t, o.state, situation)
        ]

    # --- read models ----------------------------------------------------------------------
    # Answered from the read-model tables (docs/projections.md), after pulling any event
    # another process recorded since this engine last projected.

    @guarded
    def orders(
        self,
        state: str | None = None,
        trader: str | None = None,
        limit: int = 100,
        *,
        asset: str | None = None,
        after: tuple[datetime, str] | None = None,
    ) -> list[OrderRow]:
        """Orders newest first; `trader` matches either party; `after`: the (`created_at`,
        `order`) of the last row of the page before."""
        for name, value in (("state", state), ("trader", trader), ("asset", asset)):
            _text(value, name)
        _limit(limit)
        self.projector.catch_up()
        return orders_model.query(
            self.read, state=state, trader=trader, asset=asset, limit=limit, after=after
        )

    @guarded
    def appeal_queue(
        self,
        reason: str | None = None,
        older_than: timedelta | str | None = None,
        agent: str | None = None,
        *,
        unassigned: bool = False,
        trader: str | None = None,
        waits_on: str | None = None,
        limit: int | None = None,
        at: datetime | None = None,
    ) -> list[QueueItem]:
        """Open appeals oldest first; `older_than` (e.g. "2h") is measured back from `at`."""
        older_than = _age(older_than)
        for name, value in (("reason", reason), ("agent", agent), ("trader", trader)):
            _text(value, name)
        _text(waits_on, "waits_on")
        _limit(limit)
        at = _moment(at)
        self.projector.catch_up()
        return queue_model.query(
            self.read,
            at or self.clock.now(),
            reason=reason,
            older_than=older_than,
            agent=agent,
            unassigned=unassigned,
            trader=trader,
            waits_on=waits_on,
            limit=limit,
        )

    @guarded
    def complaint_queue(
        self, *, overdue: bool = False, limit: int | None = None, at: datetime | None = None
    ) -> list[ComplaintQueueItem]:
        """Undecided complaints beside the appeal queue, earliest response deadline first
        (E5); `overdue` keeps those past it."""
        _limit(limit)
        at = _moment(at) or self.clock.now()
        self.projector.catch_up()
        return complaint_query(self.read, at, overdue=overdue, limit=limit)

    @guarded
    def trader_stats(self, name: str, at: datetime | None = None) -> TraderStats:
        """Counts, 30-day completion rate, speeds, appeals and active sanctions of a trader."""
        _text(name, "trader", optional=False)
        at = _moment(at)
        self.projector.catch_up()
        return traders_model.stats(self.read, [name], at or self.clock.now())[0]

    @guarded
    def traders(
        self, sort: str = "name", limit: int = 50, at: datetime | None = None
    ) -> list[TraderStats]:
        """`trader_stats` for the first traders by `sort` (name, orders, cancelled, appeals,
        lost)."""
        if not isinstance(sort, str) or sort not in traders_model.SORTS:
            raise ValidationError(f"sort by one of {', '.join(traders_model.SORTS)}")
        _limit(limit)
        self.projector.catch_up()
        at = _moment(at) or self.clock.now()
        names = traders_model.names(self.read, sort, limit)
        return traders_model.stats(self.read, names, at)

    @guarded
    def ledgers(self) -> list[LedgerView]:
        """Escrow totals of every asset."""
        self.projector.catch_up()
        return ledgers(self.read)

    @guarded
    def ledger_lines(
        self, order: str | None = None, asset: str | None = None, limit: int = 100
    ) -> list[LedgerLine]:
        """Escrow movements newest first, for an order or an asset."""
        _text(order, "order")
        _text(asset, "asset")
        _limit(limit)
        self.projector.catch_up()
        return ledger_lines(self.read, order=order, asset=asset, limit=limit)
