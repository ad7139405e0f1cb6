"""The embedding API: `Escrow(store_url, policy=, clock=, agents=)` with `execute(command)`,
queries and `tick(now)`. Thread-safe; a version clash reloads and decides again (bounded), so
two racing commands end as one winner and one clean refusal.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterable
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any
from uuid import UUID

from eventsourcing.application import AggregateNotFoundError, Application, ProcessingEvent
from eventsourcing.domain import DomainEventProtocol, MutableOrImmutableAggregate
from eventsourcing.persistence import IntegrityError, Recording
from eventsourcing.utils import get_topic

from commands.handlers import HANDLERS
from commands.models import Command, parse_command
from commands.queries import AppealView, LedgerView, OrderView, Outcome, Recorded, TraderView
from commands.receipts import Receipt, fingerprint
from commands.recent import STREAMS, RecentStreams
from commands.store import parse_store_url
from commands.system import (
    CloseFreezeWindow,
    ExpirePaymentProof,
    ExpirePaymentWindow,
    ExpireSanctions,
    SystemCommand,
)
from commands.unit import Unit, project
from escrow.appeal import Appeal
from escrow.clock import Clock, SystemClock
from escrow.durations import parse_duration
from escrow.errors import ConcurrencyConflict, EscrowError, NotFound, ValidationError
from escrow.machines import APPEAL, ORDER, Situation
from escrow.order import Order
from escrow.policy import Policy
from escrow.recording import EscrowAggregate, stream_id
from escrow.trader import Trader
from projections import appeal_queue as queue_model
from projections import catalog
from projections import orders as orders_model
from projections import traders as traders_model
from projections.appeal_queue import QueueItem
from projections.base import Projector
from projections.deadlines import (
    FREEZE_WINDOW,
    PAYMENT_PROOF,
    PAYMENT_WINDOW,
    SANCTION_EXPIRY,
    due,
)
from projections.inline import InlineSQLiteRecorder
from projections.ledger import LedgerLine, ledger_lines, ledgers
from projections.orders import OrderRow
from projections.readstore import ReadStore
from projections.traders import TraderStats

MAX_ATTEMPTS = 12

INLINE = "inline"  # read models are up to date when a command returns
DEFERRED = "deferred"  # brought up to date before any read-model query or tick
# SQLite: other programs read the tables in the file, so they follow every command, in the
# command's own transaction. memory: nobody but this object sees the tables, so projecting at
# the next query cannot be told apart from projecting at each command, and costs less.
# PostgreSQL: the production layout runs `escrow projections run` beside the backend.
READ_MODELS = {"sqlite": INLINE, "memory": DEFERRED, "postgresql": DEFERRED}


# What each kind of deadline fires, and on which kind of stream.
DEADLINE_COMMANDS: dict[str, Callable[[str], SystemCommand]] = {
    PAYMENT_WINDOW: lambda ref: ExpirePaymentWindow(order=ref),
    PAYMENT_PROOF: lambda ref: ExpirePaymentProof(appeal=ref),
    FREEZE_WINDOW: lambda ref: CloseFreezeWindow(appeal=ref),
    SANCTION_EXPIRY: lambda ref: ExpireSanctions(trader=ref),
}
DEADLINE_STREAMS: dict[str, type[EscrowAggregate]] = {
    PAYMENT_WINDOW: Order,
    PAYMENT_PROOF: Appeal,
    FREEZE_WINDOW: Appeal,
    SANCTION_EXPIRY: Trader,
}


class EscrowApplication(Application[UUID]):
    name = "escrow"

    def save(
        self,
        *objs: MutableOrImmutableAggregate[UUID] | DomainEventProtocol[UUID] | None,
        **kwargs: Any,
    ) -> list[Recording[UUID]]:
        """The library's `save`, without its run-time `Protocol` checks for our aggregates:
        `isinstance` against a Protocol walks every attribute name, twice per aggregate, which
        was a tenth of a command's time on the memory store."""
        processing_event = ProcessingEvent[UUID]()
        for obj in objs:
            if isinstance(obj, EscrowAggregate):
                processing_event.events.extend(obj.collect_events())
                processing_event.aggregates[obj.id] = obj
            else:
                processing_event.collect_events(obj)
        processing_event.saved_kwargs.update(kwargs)
        recordings = self._record(processing_event)
        self._take_snapshots(processing_event)
        self._notify(recordings)
        self.notify(processing_event.events)
        return recordings


class Escrow:
    def __init__(
        self,
        store: str = "memory:",
        *,
        policy: Policy | None = None,
        clock: Clock | None = None,
        agents: Iterable[str] = (),
        read_models: str | None = None,
        recent_streams: int = STREAMS,
    ) -> None:
        """`read_models`: "inline" or "deferred" (default: by backend, see READ_MODELS).
        `recent_streams`: how many of the aggregates it saved last the engine keeps in memory,
        to decide the next command on them without reading them back (commands.recent; 0
        keeps none)."""
        self.config = parse_store_url(store)
        self.policy = policy or Policy()
        self.clock = clock or SystemClock()
        self.agents = frozenset(agents)
        self.read_models = read_models or READ_MODELS[self.config.backend]
        if self.read_models not in (INLINE, DEFERRED):
            raise ValidationError(f"read_models is {INLINE!r} or {DEFERRED!r}")
        env = dict(self.config.env)
        if self.config.backend == "sqlite":
            env["APPLICATION_RECORDER_TOPIC"] = get_topic(InlineSQLiteRecorder)
        self.app = EscrowApplication(env=env)
        self.recent = RecentStreams(recent_streams)
        self.read = ReadStore.open(self.config)
        self.projector = Projector(self.app, self.read, catalog.read_models())
        self.projector.catch_up()

    def __enter__(self) -> Escrow:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.read.close()
        self.app.close()

    # --- commands ---------------------------------------------------------------------------

    def execute(self, command: Command) -> Outcome:
        """Decide and record one command; raises an EscrowError (with its code) on refusal."""
        return self._run(command, self.clock.now())

    def run(self, name: str, fields: dict[str, Any]) -> Outcome:
        """`execute` for plain data, e.g. `run("release", {"order": "o1", "by": "alice"})`."""
        return self.execute(parse_command(name, fields))

    def _run(self, command: Command, now: datetime) -> Outcome:
        handler = HANDLERS.get(type(command))
        if handler is None:
            raise ValidationError(f"not a command: {type(command).__name__}")
        system = isinstance(command, SystemCommand)
        for attempt in range(MAX_ATTEMPTS):
            unit = Unit(
                self.app, self.recent, now, self.policy, self.agents, system=system, attempt=attempt
            )
            receipt_ref = command.command_id
            if receipt_ref is not None:
                earlier = unit.find(Receipt, receipt_ref)
                if earlier is not None:
                    return self._replay(command, earlier)
            try:
                handler(unit, command)
            except EscrowError:
                if attempt + 1 < MAX_ATTEMPTS and unit.moved():
                    continue  # refused on old or mixed states (read skew): decide again
                raise
            if unit.moved(unit.kept_unchanged()):
                continue
            pending = [(a, list(a.pending_events)) for a in unit.changed]
            recorded = [self._describe(a, e) for a, events in pending for e in events]
            if receipt_ref is not None:
                unit.add(
                    Receipt.issue(
                        receipt_ref,
                        command.name,
                        command.actor,
                        self._print(command),
                        [r.model_dump(mode="json") for r in recorded],
                        now,
                    )
                )
            try:
                self._save(unit)
            except IntegrityError:
                time.sleep(random.uniform(0, 0.002 * (attempt + 1)))
                continue
            unit.keep()
            return Outcome.model_construct(
                command=command.name, command_id=receipt_ref, recorded=recorded, replayed=False
            )
        raise ConcurrencyConflict(f"{command.name} kept losing races; nothing was recorded")

    def _save(self, unit: Unit) -> None:
        """Record the unit's events atomically and, inline, project them."""
        if self.read_models == DEFERRED:
            self.app.save(*unit.changed)
            return
        if self.config.backend == "sqlite":
            events = [e for a in unit.changed for e in a.pending_events]
            with self.projector.inside(events) as hook:
                self.app.save(*unit.changed, project=hook)
            if not hook.applied:
                self.projector.catch_up()
            return
        recordings = self.app.save(*unit.changed)
        if recordings:
            first = recordings[0].notification.id
            last = recordings[-1].notification.id
            done = [r.domain_event for r in recordings]
            if not self.projector.apply(first, done, last):
                self.projector.catch_up()

    def catch_up(self) -> int:
        """Bring every read model up to date now (queries and `tick` do it themselves; this
        is for programs reading the tables with plain SQL in deferred mode)."""
        return self.projector.catch_up()

    @staticmethod
    def _print(command: Command) -> str:
        return fingerprint(command.name, command.model_dump(mode="json", exclude={"command_id"}))

    def _replay(self, command: Command, receipt: Receipt) -> Outcome:
        if receipt.fingerprint != self._print(command):
            raise ValidationError(
                f"command_id {command.command_id!r} was already used for another command"
            )
        return Outcome(
            command=command.name,
            command_id=command.command_id,
            replayed=True,
            recorded=[Recorded.model_validate(r) for r in receipt.recorded],
        )

    @staticmethod
    def _describe(aggregate: EscrowAggregate, event: Any) -> Recorded:
        return Recorded.model_construct(  # trusted fields straight from the event
            stream=aggregate.KIND,
            ref=aggregate.ref,
            version=event.originator_version,
            event=type(event).__name__,
            rule=event.rule,
            actor=event.actor,
            at=event.timestamp,
        )

    # --- deadlines ------------------------------------------------------------------------

    def tick(self, now: datetime | None = None) -> list[Outcome]:
        """Fire every deadline due at `now` (default: the clock), each once, as system
        commands; a deadline that no longer applies records nothing."""
        now = now or self.clock.now()
        self.projector.catch_up()
        fired: list[Outcome] = []
        for kind, stream, ref in due(self.read, now):
            ref = ref or self._ref_of(DEADLINE_STREAMS[kind], stream)
            if ref is None:
                continue
            command = DEADLINE_COMMANDS[kind](ref)
            try:
                fired.append(self._run(command, now))
            except EscrowError:
                continue  # moved on since (paid, proven, lifted): the deadline no longer applies
        return fired

    def _ref_of(self, cls: type[EscrowAggregate], stream: UUID) -> str | None:
        """The caller's id of a stream the read models do not name (never expected once
        they are caught up; the stream itself is the authority)."""
        try:
            found = self.app.repository.get(stream, projector_func=project)
        except AggregateNotFoundError:
            return None
        assert isinstance(found, cls)
        return found.ref

    # --- queries --------------------------------------------------------------------------

    def _load(self, cls: type[EscrowAggregate], ref: str, version: int | None = None) -> Any:
        try:
            return self.app.repository.get(
                stream_id(cls.KIND, ref), version=version, projector_func=project
            )
        except AggregateNotFoundError:
            raise NotFound(f"no {cls.KIND} {ref!r}") from None

    def order(self, ref: str) -> OrderView:
        return OrderView.of(self._load(Order, ref))

    def appeal(self, ref: str) -> AppealView:
        return AppealView.of(self._load(Appeal, ref))

    def trader(self, name: str, at: datetime | None = None) -> TraderView:
        try:
            found: Trader | None = self._load(Trader, name)
        except NotFound:
            found = None
        return TraderView.of(name, found, at or self.clock.now())

    def ledger(self, asset: str) -> LedgerView:
        self.projector.catch_up()
        rows = self.read.query(
            "SELECT in_escrow, released, returned FROM escrow_ledger WHERE asset = ?", [asset]
        )
        values = [Decimal(str(v)) for v in rows[0]] if rows else [Decimal(0)] * 3
        return LedgerView(asset=asset, in_escrow=values[0], released=values[1], returned=values[2])

    def allowed(
        self, actor: str, *, order: str | None = None, appeal: str | None = None
    ) -> list[str]:
        """What `actor` may do now on this order or appeal: the commands the rulebook would
        accept from its current state (amount limits are checked when the command comes)."""
        unit = Unit(self.app, self.recent, self.clock.now(), self.policy, self.agents)
        who = unit.actor(actor)
        now = self.clock.now()
        if appeal is not None:
            a = self._load(Appeal, appeal)
            o = self._load(Order, a.order)
            roles = a.roles_of(who)
            situation = Situation(o, now, a, outcome=None)
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

    def orders(
        self,
        state: str | None = None,
        trader: str | None = None,
        limit: int = 100,
        *,
        asset: str | None = None,
    ) -> list[OrderRow]:
        """Orders newest first; `trader` matches either party."""
        self.projector.catch_up()
        return orders_model.query(self.read, state=state, trader=trader, asset=asset, limit=limit)

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
        if isinstance(older_than, str):
            older_than = parse_duration(older_than)
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

    def trader_stats(self, name: str, at: datetime | None = None) -> TraderStats:
        """Counts, 30-day completion rate, speeds, appeals and active sanctions of a trader."""
        self.projector.catch_up()
        return traders_model.stats(self.read, [name], at or self.clock.now())[0]

    def traders(
        self, sort: str = "name", limit: int = 50, at: datetime | None = None
    ) -> list[TraderStats]:
        """`trader_stats` for the first traders by `sort` (name, orders, cancelled, appeals,
        lost)."""
        if sort not in traders_model.SORTS:
            raise ValidationError(f"sort by one of {', '.join(traders_model.SORTS)}")
        self.projector.catch_up()
        at = at or self.clock.now()
        names = traders_model.names(self.read, sort, limit)
        return traders_model.stats(self.read, names, at)

    def ledgers(self) -> list[LedgerView]:
        """Escrow totals of every asset."""
        self.projector.catch_up()
        return ledgers(self.read)

    def ledger_lines(
        self, order: str | None = None, asset: str | None = None, limit: int = 100
    ) -> list[LedgerLine]:
        """Escrow movements newest first, for an order or an asset."""
        self.projector.catch_up()
        return ledger_lines(self.read, order=order, asset=asset, limit=limit)
