"""Property-based tests: random command sequences never break the escrow's invariants, and
replaying the stored history always rebuilds what the engine reported while it ran.

Each example runs 20–60 steps (orders, payments, cancellations, releases, appeals with every
reason from either side, evidence, reviews, refunds, proofs, top-ups, freeze proofs, sanctions,
resolutions, clock advances with `tick`, re-sent command ids) on a fresh store, most steps valid
and some deliberately not. After every step: a refused command stored nothing; a command that
succeeded stored exactly the events it reported; every order's escrow and the ledger balance.
At the end: the stored history is walked event by event (versions contiguous, no release while
an appeal was open, terminal orders final, one resolved appeal per issue) and every aggregate is
reloaded from the store, by a second engine where the store allows it, at every version a
command left it in, and compared with the live aggregate that was saved.
"""

from __future__ import annotations

import copy
import tempfile
import uuid
from collections import Counter, defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from decimal import Decimal
from pathlib import Path
from typing import Any
from uuid import UUID

import psycopg
import pytest
from hypothesis import HealthCheck, given, note, settings
from hypothesis import event as label_example
from hypothesis import strategies as st

from escrow.appeal import Appeal
from escrow.application import project
from escrow.clock import ManualClock
from escrow.commands.api import Escrow
from escrow.complaint import Complaint
from escrow.errors import PRECEDENCE, EscrowError
from escrow.order import Order
from escrow.recording import EscrowAggregate, stream_id
from escrow.views import AppealView, ComplaintView, OrderView, TraderView
from escrow.vocabulary import APPEAL_TERMINAL, ORDER_TERMINAL, OrderState
from tests.conftest import (
    AGENTS,
    REQUIRE_PG,
    START,
    SUPERVISORS,
    _conninfo,
    postgres_unavailable,
)
from tests.helpers import event_count
from tests.strategies import ASSETS, TRADERS, Step, World, draw_step

Snapshot = dict[str, Any]


# --- stores, one fresh per example ----------------------------------------------------------


@contextmanager
def fresh_store(backend: str) -> Iterator[str]:
    """A new empty store for one example, removed afterwards."""
    if backend == "memory":
        yield "memory:"
    elif backend == "sqlite":
        with tempfile.TemporaryDirectory(prefix="escrow-prop-") as folder:
            yield f"sqlite:///{Path(folder) / 'escrow.db'}"
    else:
        schema = f"p_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(_conninfo(), autocommit=True) as conn:
            conn.execute(f"CREATE SCHEMA {schema}")
        try:
            yield f"{_conninfo()}?schema={schema}"
        finally:
            with psycopg.connect(_conninfo(), autocommit=True) as conn:
                conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")


def require_postgres() -> None:
    problem = postgres_unavailable()
    if problem is not None:
        if REQUIRE_PG:
            pytest.fail(f"PostgreSQL is required but unreachable: {problem}")
        pytest.skip(f"PostgreSQL unreachable: {problem}")


# --- one session: a random sequence on one engine ----------------------------------------


def state_of(aggregate: EscrowAggregate) -> Snapshot:
    """Everything an aggregate holds, as it is now (pending events aside)."""
    return copy.deepcopy({k: v for k, v in vars(aggregate).items() if k != "_pending_events"})


class Session:
    def __init__(self, url: str) -> None:
        self.url = url
        self.clock = ManualClock(START)
        self.engine = Escrow(url, clock=self.clock, agents=AGENTS, supervisors=SUPERVISORS)
        self.world = World()
        # (stream id, version) -> the live aggregate's state right after a command saved it
        self.live: dict[tuple[UUID, int], Snapshot] = {}
        # (kind, ref, version) -> what a view reported during the run
        self.reported: dict[tuple[str, str, int], Any] = {}
        self.traders: dict[tuple[str, int], list[tuple[Any, TraderView]]] = defaultdict(list)
        self.codes: Counter[str] = Counter()
        self.orders_moved = False
        self._spy_on_saves()

    def _spy_on_saves(self) -> None:
        save = self.engine.app.save

        def spying_save(*aggregates: Any, **kwargs: Any) -> Any:
            recordings = save(*aggregates, **kwargs)
            for aggregate in aggregates:
                self.live[(aggregate.id, aggregate.version)] = state_of(aggregate)
            return recordings

        self.engine.app.save = spying_save  # type: ignore[method-assign]

    def close(self) -> None:
        self.engine.close()

    # --- running ------------------------------------------------------------------------

    def run(self, step: Step) -> None:
        self.orders_moved = False
        self._run(step)
        self.check_escrow(ledger=self.orders_moved)  # only order events move the ledger

    def _run(self, step: Step) -> None:
        if step.name == "wait":
            assert step.wait is not None
            self.clock.advance(step.wait)
            before = event_count(self.engine)
            fired = self.engine.tick()
            assert self.stored_since(before) == sum(len(o.recorded) for o in fired)
            for outcome in fired:
                assert all(r.actor == "system" for r in outcome.recorded)
                self._refresh(outcome.recorded)
            self.codes["wait"] += 1
            return
        if step.name == "resend":
            self._resend(self.world.sent[step.fields["step"]])
            return
        before = event_count(self.engine)
        try:
            outcome = self.engine.run(step.name, dict(step.fields))
        except EscrowError as refusal:
            assert refusal.code in PRECEDENCE, refusal
            assert self.stored_since(before) == 0, f"refused {step} but stored events"
            self.codes[refusal.code] += 1
            note(f"  -> refused {refusal.code}")
            return
        assert outcome.recorded, f"{step} succeeded but recorded nothing"
        assert not outcome.replayed
        assert self.stored_since(before) == len(outcome.recorded) + (
            1 if "command_id" in step.fields else 0  # the receipt
        )
        self.codes["ok"] += 1
        if "command_id" in step.fields:
            self.world.sent.append(step)
        note(f"  -> {[(r.ref, r.event) for r in outcome.recorded]}")
        self._refresh(outcome.recorded)

    def stored_since(self, position: int) -> int:
        """Events stored after a log position: a count, as PostgreSQL ids may skip."""
        return len(self.engine.app.recorder.select_notifications(position + 1, 10**6))

    def _resend(self, step: Step) -> None:
        """Idempotency: the same command_id returns the first outcome and stores nothing;
        the same id on another command is refused."""
        before = event_count(self.engine)
        first = self.engine.run(step.name, dict(step.fields))
        assert first.replayed and self.stored_since(before) == 0
        again = self.engine.run(step.name, dict(step.fields))
        assert again.recorded == first.recorded
        other = {"order": "o1", "by": "nobody", "command_id": step.fields["command_id"]}
        with pytest.raises(EscrowError) as caught:
            self.engine.run("release" if step.name != "release" else "cancel_order", other)
        assert caught.value.code == "validation_error"
        assert self.stored_since(before) == 0
        self.codes["resend"] += 1

    def _refresh(self, recorded: list[Any]) -> None:
        """Ask the engine for the views of what just changed, and remember them."""
        for ref, stream in {(r.ref, r.stream) for r in recorded}:
            self.orders_moved |= stream == "order"
            if stream == "order":
                view: Any = self.engine.order(ref)
                self.world.orders[ref] = view
            elif stream == "appeal":
                view = self.engine.appeal(ref)
                self.world.appeals[ref] = view
            elif stream == "complaint":
                view = self.engine.complaint(ref)
                self.world.complaints[ref] = view
            elif stream == "trader":
                version: int = self.engine.app.repository.get(stream_id("trader", ref)).version
                now = self.clock.now()
                self.world.traders[ref] = self.engine.trader(ref)
                self.traders[(ref, version)].append((now, self.world.traders[ref]))
                continue
            else:
                continue
            self.reported[(stream, ref, view.version)] = view

    # --- invariants while running --------------------------------------------------------

    def check_escrow(self, ledger: bool = True) -> None:
        """Escrow is conserved per order and per asset (ledger read model)."""
        totals: dict[str, dict[str, Decimal]] = defaultdict(lambda: defaultdict(Decimal))
        for o in self.world.orders.values():
            e = o.escrow
            assert e.locked == o.amount, o
            if o.state in ORDER_TERMINAL:
                assert e.released + e.returned == e.locked, o
                if o.state == OrderState.COMPLETED:
                    assert (e.released, e.returned) == (o.amount, Decimal(0)), o
                else:
                    assert (e.released, e.returned) == (Decimal(0), o.amount), o
            else:
                assert e.released == e.returned == 0, o
            t = totals[o.asset]
            t["locked"] += e.locked
            t["released"] += e.released
            t["returned"] += e.returned
        for asset in totals if ledger else ():
            view = self.engine.ledger(asset)
            t = totals[asset]
            assert view.in_escrow + view.released + view.returned == t["locked"], view
            assert view.released == t["released"] and view.returned == t["returned"], view

    # --- invariants over the stored history ----------------------------------------------

    def check_history(self) -> None:
        """Walk every stored event in log order."""
        app = self.engine.app
        notifications = app.recorder.select_notifications(1, 10**6)
        versions: dict[UUID, list[int]] = defaultdict(list)
        order_state: dict[UUID, str] = {}
        open_appeal: dict[UUID, str | None] = {}
        resolved_issues: dict[UUID, set[str]] = defaultdict(set)
        appeal_window: dict[str, list[int]] = {}  # appeal ref -> [opened at, closed at]
        appeals_of: dict[str, list[str]] = defaultdict(list)  # order ref -> appeal refs
        releases: list[tuple[str, int]] = []
        appeal_resolutions: Counter[tuple[str, str]] = Counter()
        appeal_state: dict[str, str] = {}
        refs: dict[UUID, str] = {}  # stream id -> order or appeal ref
        issue_of: dict[str, tuple[str, str]] = {}  # appeal ref -> (order ref, issue)
        clawbacks: dict[UUID, list[Decimal]] = {}  # appeal stream -> [clawback, recovered]
        fiat_amount: dict[UUID, Decimal] = {}  # complaint stream -> its order's fiat amount
        decided: set[UUID] = set()
        last_id = 0
        for n in notifications:
            assert n.id > last_id
            last_id = n.id
            event = app.mapper.to_domain_event(n)
            self.codes[type(event).__qualname__] += 1
            oid = UUID(str(n.originator_id))
            versions[oid].append(n.originator_version)
            if isinstance(event, Order.Created):
                order_state[oid], open_appeal[oid] = event.state, None
                refs[oid] = event.ref
            elif isinstance(event, Order.Moved):
                previous = order_state[oid]
                if previous in ORDER_TERMINAL:  # terminal states are final
                    assert event.state == previous, f"{event} moved a {previous} order"
                    assert not isinstance(
                        event, Order.Released | Order.Cancelled | Order.MarkedPaid
                    )
                if isinstance(event, Order.Released):
                    assert open_appeal[oid] is None, f"release during appeal {open_appeal[oid]}"
                    assert previous == OrderState.PAID
                    releases.append((refs[oid], n.id))
                if isinstance(event, Order.AppealOpened):
                    assert open_appeal[oid] is None, "two appeals open at once (A7)"
                    open_appeal[oid] = event.appeal
                if isinstance(event, Order.AppealCancelled | Order.AppealResolved):
                    assert open_appeal[oid] == event.appeal
                    open_appeal[oid] = None
                if isinstance(event, Order.AppealResolved):
                    assert event.issue not in resolved_issues[oid], "issue resolved twice (A3)"
                    resolved_issues[oid].add(event.issue)
                order_state[oid] = event.state
            elif isinstance(event, Appeal.Opened):
                appeal_window[event.ref] = [n.id, 10**18]
                appeals_of[event.order].append(event.ref)
                appeal_state[event.ref] = event.state
                refs[oid], issue_of[event.ref] = event.ref, (event.order, event.issue)
            elif isinstance(event, Appeal.ReversalConfirmed):
                assert oid not in clawbacks, "a reversal confirmed twice (K1)"
                clawbacks[oid] = [event.amount, Decimal(0)]
            elif isinstance(event, Appeal.RecoveryRecorded):
                clawback = clawbacks[oid]
                clawback[1] += event.amount
                assert clawback[1] <= clawback[0], "recovered above the clawback (K2)"
            elif isinstance(event, Complaint.Filed):
                fiat_amount[oid] = event.fiat_amount
            elif isinstance(event, Complaint.Decided):
                assert oid not in decided, "a complaint decided twice (E2)"
                decided.add(oid)
                if event.compensation is not None:
                    assert event.decision == "overturned"
                    assert 0 < event.compensation <= fiat_amount[oid], "compensation (E4)"
            elif isinstance(event, Appeal.Moved):
                ref = refs[oid]
                assert appeal_state[ref] not in APPEAL_TERMINAL, "a closed appeal moved"
                appeal_state[ref] = event.state
                if event.state in APPEAL_TERMINAL:
                    appeal_window[ref][1] = n.id
                if isinstance(event, Appeal.Resolved):
                    appeal_resolutions[issue_of[ref]] += 1
        for oid, seen in versions.items():
            assert seen == list(range(1, len(seen) + 1)), f"stream {oid} versions {seen}"
        for order_ref, at in releases:  # across streams: no release inside an appeal's life
            for appeal_ref in appeals_of[order_ref]:
                opened, closed = appeal_window[appeal_ref]
                assert not opened < at < closed, f"{order_ref} released during {appeal_ref}"
        assert max(appeal_resolutions.values(), default=0) <= 1, appeal_resolutions

    # --- replay ----------------------------------------------------------------------------

    def check_replay(self) -> None:
        """Every aggregate, reloaded from the store at every version a command saved and at
        its last one, equals the live aggregate and what the views reported."""
        if self.url == "memory:":
            self._compare(self.engine)
            return
        with Escrow(self.url, clock=self.clock, agents=AGENTS, supervisors=SUPERVISORS) as other:
            self._compare(other)
            # Read models rebuilt from the first event agree with the ones kept during the run.
            kept = [self.engine.ledger(a) for a in ASSETS]
            other.projector.rebuild()
            assert [other.ledger(a) for a in ASSETS] == kept

    def _compare(self, other: Escrow) -> None:
        repository = other.app.repository
        for (oid, version), live in self.live.items():
            stored = repository.get(oid, version=version, projector_func=project)
            assert state_of(stored) == live, f"stream {oid} v{version} replays differently"
        for (kind, ref, version), view in self.reported.items():
            aggregate = repository.get(
                stream_id(kind, ref), version=version, projector_func=project
            )
            of = {"order": OrderView.of, "appeal": AppealView.of, "complaint": ComplaintView.of}
            assert of[kind](aggregate) == view, f"{kind} {ref} v{version}"
        for (name, version), seen in self.traders.items():
            trader = repository.get(
                stream_id("trader", name), version=version, projector_func=project
            )
            for at, view in seen:
                assert TraderView.of(name, trader, at) == view
        for ref, view in self.world.orders.items():
            assert other.order(ref) == view
        for ref, a in self.world.appeals.items():
            assert other.appeal(ref) == a
        for ref, c in self.world.complaints.items():
            assert other.complaint(ref) == c
        now = self.clock.now()
        for name in TRADERS:
            assert other.trader(name, now) == self.engine.trader(name, now)
        for oid in {oid for oid, _ in self.live}:
            last = repository.get(oid, projector_func=project)
            for version in range(1, last.version):  # intermediate versions replay cleanly
                assert (
                    repository.get(oid, version=version, projector_func=project).version == version
                )


def play(backend: str, data: st.DataObject, most: int = 60) -> Counter[str]:
    with fresh_store(backend) as url:
        session = Session(url)
        try:
            for _ in range(data.draw(st.integers(20, most), label="steps")):
                step = draw_step(data, session.world)
                note(str(step))
                session.run(step)
            session.check_escrow()
            session.check_history()
            session.check_replay()
            for label in session.codes:  # coverage, shown by --hypothesis-show-statistics
                label_example(label)
            return session.codes
        finally:
            session.close()


SETTINGS = settings(
    deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large]
)


@settings(SETTINGS, max_examples=100)
@given(data=st.data())
def test_random_sequences_keep_the_invariants_in_memory(data: st.DataObject) -> None:
    play("memory", data)


@settings(SETTINGS, max_examples=60)
@given(data=st.data())
def test_random_sequences_keep_the_invariants_on_sqlite(data: st.DataObject) -> None:
    play("sqlite", data)


@settings(SETTINGS, max_examples=15)
@given(data=st.data())
def _postgres_examples(data: st.DataObject) -> None:
    play("postgresql", data, most=40)


def test_random_sequences_keep_the_invariants_on_postgresql() -> None:
    require_postgres()
    _postgres_examples()
