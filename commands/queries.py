"""What a caller may ask: aggregates as they are now, what an actor may do next, and the
read models. Aggregate queries read their stream (the authority); read-model queries first pull
any event another process recorded since this engine last projected, so they never answer from
stale tables."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any, NamedTuple

from eventsourcing.application import AggregateNotFoundError

from escrow.appeal import Appeal
from escrow.application import project
from escrow.clock import Clock, bounded
from escrow.commands.allowed import ON_APPEAL, ON_COMPLAINT, ON_ORDER, accepted
from escrow.commands.bootstrap import Wiring, guarded
from escrow.commands.execution import CommandRunner
from escrow.commands.models import CODE_PATTERN, REF_PATTERN, Command, OpenAppeal
from escrow.complaint import Complaint
from escrow.durations import MAX_DURATION, bounded_duration
from escrow.errors import NotFound, ValidationError
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
from escrow.views import (
    AppealView,
    ComplaintView,
    LedgerView,
    OrderView,
    Outcome,
    TraderView,
)
from escrow.vocabulary import OrderState, Reason

MAX_LIMIT = 1_000_000  # rows a read-model query may ask for


FORMS = {
    REF_PATTERN: "an id or name: 1-64 letters, digits or ._:@-",
    CODE_PATTERN: "an asset code: 2-10 upper-case letters or digits",
}


def _text(value: Any, field: str, optional: bool = True, pattern: str = REF_PATTERN) -> Any:
    """An id, a name or a code as the commands accept them, or a validation error naming the
    argument: a string of another type would reach the database driver and fail there (as a
    store error it is not), and one no command accepts (`usdt`, `" "`) can only match nothing,
    which would read as an honest empty answer."""
    if value is None and optional:
        return None
    if not isinstance(value, str):
        raise ValidationError(f"{field} is a string, not {type(value).__name__}")
    if re.match(pattern, value) is None:
        raise ValidationError(f"{field}: {value!r} is not {FORMS[pattern]}")
    return value


def _choice(value: Any, field: str, choices: Iterable[str]) -> Any:
    """A filter with a fixed vocabulary (an order state, an appeal reason, what an appeal
    waits on): anything else is a validation error listing the values, not an empty answer."""
    if value is None:
        return None
    known = sorted(choices)
    if not isinstance(value, str) or value not in known:
        raise ValidationError(f"{field} is one of {', '.join(known)}, not {value!r}")
    return value


def _after(value: Any) -> Any:
    if value is None:
        return None
    if not (isinstance(value, tuple) and len(value) == 2 and isinstance(value[0], datetime)):
        raise ValidationError("after is the (created_at, order) of the last row of a page")
    bounded(value[0], "after")
    _text(value[1], "after", optional=False)
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


class Changed(NamedTuple):
    order: OrderView | None = None
    appeal: AppealView | None = None
    complaint: ComplaintView | None = None


VIEWS: dict[str, tuple[type[EscrowAggregate], Callable[[Any], Any]]] = {
    "order": (Order, OrderView.of),
    "appeal": (Appeal, AppealView.of),
    "complaint": (Complaint, ComplaintView.of),
}


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
        self.recent = runner.recent

    def _load(self, cls: type[EscrowAggregate], ref: str, version: int | None = None) -> Any:
        _text(ref, cls.KIND, optional=False)
        try:
            return self.app.repository.get(
                stream_id(cls.KIND, ref), version=version, projector_func=project
            )
        except AggregateNotFoundError:
            raise NotFound(f"no {cls.KIND} {ref!r}") from None

    @guarded
    def changed(self, outcome: Outcome) -> Changed:
        """The order, appeal and complaint a command changed, as that command left them (for a
        replayed outcome: as the first time): built from the aggregates the engine kept when
        they are at those versions, else read from the store at those versions."""
        last = {(r.stream, r.ref): r.version for r in outcome.recorded}
        found: dict[str, Any] = {}
        for (kind, ref), version in last.items():
            if kind not in VIEWS or kind in found:
                continue
            cls, make = VIEWS[kind]
            key = stream_id(cls.KIND, ref)
            view = self.recent.view(key, version, make)
            found[kind] = view if view is not None else make(self._load(cls, ref, version))
        return Changed(**found)

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
        _text(name, "trader", optional=False)
        at = _moment(at)
        try:
            found: Trader | None = self._load(Trader, name)
        except NotFound:
            found = None
        return TraderView.of(name, found, at or self.clock.now())

    @guarded
    def staff(self) -> dict[str, str]:
        """Everyone appointed to customer service now: name -> "agent" or "supervisor".

        Read from the appointment events of the log (`appoint_agent`, `dismiss_agent`), pages
        of the notification log filtered by topic: for tools, consoles and the simulator, not
        for a command's path (a command reads the one trader stream it needs)."""
        topics = (Trader.Appointed.TOPIC, Trader.Dismissed.TOPIC)
        recorder, page, start = self.app.recorder, 1000, 1
        last: dict[Any, str] = {}  # each person's latest appointment event
        while found := recorder.select_notifications(start, page, topics=topics):
            for n in found:
                last[n.originator_id] = n.topic
            start = found[-1].id + 1
        get = self.app.repository.get
        people = [get(key, projector_func=project) for key, t in last.items() if t == topics[0]]
        return {p.ref: p.role for p in sorted(people, key=lambda p: p.ref) if p.role is not None}

    @guarded
    def ledger(self, asset: str) -> LedgerView:
        """Escrow and clawback totals of one asset (zero for an asset never traded)."""
        _text(asset, "asset", optional=False, pattern=CODE_PATTERN)
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
        """The names of the commands `actor` may issue now on this order, appeal or complaint,
        in the order of the command table.

        The contract: `name` is listed if and only if `execute` would accept, at this moment,
        some command of that name from `actor` on this target, with representative fields
        (escrow.commands.allowed): each reason of `open_appeal` (`appeal_reasons` says which), each
        outcome of `resolve_appeal`, each decision of `decide_complaint`, a new id for the
        appeal or complaint a command creates, and the smallest amount for a command that
        takes one (every amount rule is an upper bound: a command listed may still be refused
        for its amount). On an order: mark_paid, cancel_order, release, open_appeal; on an
        appeal: the appeal commands and file_complaint; on a complaint: the complaint
        commands. Decided by the handlers `execute` runs, on copies, saving nothing; a
        command recorded meanwhile (another process) may change the answer."""
        _text(actor, "actor", optional=False)
        if complaint is not None:
            found = self._accepted(actor, ON_COMPLAINT, complaint=_text(complaint, "complaint"))
        elif appeal is not None:
            found = self._accepted(actor, ON_APPEAL, appeal=_text(appeal, "appeal"))
        elif order is not None:
            found = self._accepted(actor, ON_ORDER, order=_text(order, "order"))
        else:
            raise ValidationError("name an order, an appeal or a complaint")
        return list(found)

    @guarded
    def appeal_reasons(self, actor: str, order: str) -> list[str]:
        """The reasons `actor` may open an appeal for on `order` now (A3, A6, A7, C6): a
        reason listed is one `open_appeal` accepts; empty when `allowed` leaves it out."""
        _text(actor, "actor", optional=False)
        found = self._accepted(actor, ("open_appeal",), order=_text(order, "order"))
        return [c.reason for c in found.get("open_appeal", []) if isinstance(c, OpenAppeal)]

    def _accepted(
        self, actor: str, names: tuple[str, ...], **target: str
    ) -> dict[str, list[Command]]:
        return accepted(self.runner, self.runner.moment(self.clock.now()), actor, names, target)

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
        _choice(state, "state", OrderState)
        _text(trader, "trader")
        _text(asset, "asset", pattern=CODE_PATTERN)
        _after(after)
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
        _choice(reason, "reason", Reason)
        _text(agent, "agent")
        _text(trader, "trader")
        _choice(waits_on, "waits_on", queue_model.WAITS_ON)
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
        _text(asset, "asset", pattern=CODE_PATTERN)
        _limit(limit)
        self.projector.catch_up()
        return ledger_lines(self.read, order=order, asset=asset, limit=limit)
