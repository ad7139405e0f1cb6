"""Read models (orders, appeal queue, traders, ledger, deadlines) against the aggregates.

Random histories come from two drivers: the seeded simulator (`escrow.commands.simulation.simulate`, every reason
and every way an appeal ends, checked while stories are still in flight) and a small random
driver below (any command an actor is allowed, plus refused ones, sanctions and clock jumps,
leaving appeals open). After each history every read model is compared, row by row, with what
the aggregates say; then all read models are rebuilt from the first event and must equal the
tables that were kept up to date command by command.
"""

from __future__ import annotations

import tempfile
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from escrow.clock import ManualClock
from escrow.commands.api import Escrow
from escrow.commands.simulation.simulate import simulate
from escrow.errors import EscrowError
from escrow.order import Order
from escrow.projections.appeal_queue import waiting
from escrow.projections.catalog import read_models
from escrow.projections.deadlines import (
    FREEZE_WINDOW,
    PAYMENT_PROOF,
    PAYMENT_WINDOW,
    SANCTION_EXPIRY,
)
from escrow.projections.rows import stamp
from escrow.projections.traders import WINDOW
from escrow.recording import stream_id
from escrow.views import AppealView, OrderView
from escrow.vocabulary import APPEAL_TERMINAL, ORDER_TERMINAL, AppealState, OrderState
from tests.conftest import AGENTS, REQUIRE_PG, START, _conninfo, postgres_unavailable
from tests.helpers import order_fields, paid_order

TRADERS = ("ann", "ben", "cat", "dan")
BUYER_REASONS = (
    "seller_not_releasing",
    "cancelled_after_payment",
    "amount_mismatch",
    "seller_payment_method_problem",
    "verbal_abuse",
)
SELLER_REASONS = (
    "payment_not_received",
    "insufficient_payment",
    "non_real_name_payment",
    "bank_account_frozen",
    "verbal_abuse",
)
Snapshot = dict[str, list[tuple[Any, ...]]]


# --- stores -------------------------------------------------------------------------------


@contextmanager
def fresh_store(backend: str) -> Iterator[str]:
    """A new empty store (one per hypothesis example), removed afterwards."""
    if backend == "memory":
        yield "memory:"
    elif backend == "sqlite":
        with tempfile.TemporaryDirectory(prefix="escrow-proj-") as folder:
            yield f"sqlite:///{Path(folder) / 'escrow.db'}"
    else:
        problem = postgres_unavailable()
        if problem is not None:
            if REQUIRE_PG:
                pytest.fail(f"PostgreSQL is required but unreachable: {problem}")
            pytest.skip(f"PostgreSQL unreachable: {problem}")
        schema = f"r_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(_conninfo(), autocommit=True) as conn:
            conn.execute(f"CREATE SCHEMA {schema}")
        try:
            yield f"{_conninfo()}?schema={schema}"
        finally:
            with psycopg.connect(_conninfo(), autocommit=True) as conn:
                conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")


def snapshot(engine: Escrow) -> Snapshot:
    """Every read-model table, rows sorted: what a rebuild must reproduce exactly."""
    tables: Snapshot = {}
    for model in read_models():
        for table in model.tables:
            rows = engine.read.query(f"SELECT * FROM {table}")
            tables[table] = sorted(rows, key=repr)
    return tables


# --- what the aggregates say --------------------------------------------------------------


def order_events(engine: Escrow, ref: str) -> list[Any]:
    return list(engine.app.events.get(stream_id("order", ref)))


def check_orders(engine: Escrow, refs: set[str]) -> dict[str, OrderView]:
    rows = {r.order: r for r in engine.orders(limit=100_000)}
    assert set(rows) == refs
    views = {}
    for ref in refs:
        view = views[ref] = engine.order(ref)
        row = rows[ref]
        for field in (
            "state",
            "seller",
            "buyer",
            "asset",
            "amount",
            "fiat",
            "fiat_amount",
            "price",
            "payment_method",
            "paid_amount",
            "cancel_reason",
            "open_appeal",
            "created_at",
            "paid_at",
            "closed_at",
            "version",
        ):
            assert getattr(row, field) == getattr(view, field), (ref, field, row, view)
        assert row.appeals == len(view.appeals)
    return views


def check_queue(engine: Escrow, appeals: set[str], at: datetime) -> dict[str, AppealView]:
    views = {ref: engine.appeal(ref) for ref in appeals}
    queue = engine.appeal_queue(at=at)
    open_ = {ref for ref, v in views.items() if v.state not in APPEAL_TERMINAL}
    assert [i.appeal for i in queue] == sorted(open_, key=lambda r: (views[r].opened_at, r)), (
        "the queue holds exactly the open appeals, oldest first"
    )
    for item in queue:
        view = views[item.appeal]
        assert (item.order, item.reason, item.opener, item.side) == (
            view.order,
            view.reason,
            view.opener,
            view.side,
        )
        assert (item.state, item.agent, item.refund_state, item.version) == (
            view.state,
            view.agent,
            view.refund_state,
            view.version,
        )
        assert item.opened_at == view.opened_at and item.age == at - view.opened_at
        assert item.evidence == view.evidence_count
        assert (item.waits_on, item.waits_for) == waiting(view.state, view.refund_state)
        due = {
            AppealState.AWAITING_PAYMENT_PROOF: view.proof_deadline,
            AppealState.AWAITING_FREEZE_PROOF: view.freeze_deadline,
        }.get(AppealState(view.state))
        assert item.due_at == due, (item, view)
    return views


def check_traders(
    engine: Escrow,
    orders: dict[str, OrderView],
    appeals: dict[str, AppealView],
    names: set[str],
    at: datetime,
) -> None:
    for name in names:
        mine = [o for o in orders.values() if name in (o.seller, o.buyer)]
        closed = [o for o in mine if o.state in ORDER_TERMINAL]
        recent = [o for o in closed if o.closed_at and at - WINDOW < o.closed_at <= at]
        done = sum(o.state == OrderState.COMPLETED for o in recent)
        rate = None
        if recent:
            rate = (Decimal(done) / len(recent)).quantize(Decimal("0.0001"))
        pay = [o.paid_at - o.created_at for o in mine if o.buyer == name and o.paid_at]
        release = []
        for o in mine:
            if o.seller == name:
                for e in order_events(engine, o.order):
                    if isinstance(e, Order.Released):
                        assert o.paid_at is not None
                        release.append(e.timestamp - o.paid_at)
        won = lost = 0
        for a in appeals.values():
            if a.outcome in ("release", "cancel") and name in (
                orders[a.order].buyer,
                orders[a.order].seller,
            ):
                winner = "buyer" if a.outcome == "release" else "seller"
                won += getattr(orders[a.order], winner) == name
                lost += getattr(orders[a.order], winner) != name
        stats = engine.trader_stats(name, at)
        assert stats.orders == len(mine)
        assert stats.completed == sum(o.state == OrderState.COMPLETED for o in closed)
        assert stats.cancelled == sum(o.state == OrderState.CANCELLED for o in closed)
        assert (stats.completed_30d, stats.cancelled_30d) == (done, len(recent) - done)
        assert stats.completion_rate_30d == rate
        assert stats.avg_pay_seconds == _avg(pay)
        assert stats.avg_release_seconds == _avg(release)
        assert stats.appeals_opened == sum(a.opener == name for a in appeals.values())
        assert (stats.appeals_won, stats.appeals_lost) == (won, lost)
        assert stats.sanctions == engine.trader(name, at).sanctions


def _avg(spans: list[timedelta]) -> Decimal | None:
    if not spans:
        return None
    micros = sum(s // timedelta(microseconds=1) for s in spans)
    return (Decimal(micros) / len(spans) / 1_000_000).quantize(Decimal("0.001"))


def check_ledger(engine: Escrow, orders: dict[str, OrderView]) -> None:
    expected: dict[str, list[Decimal]] = {}
    for o in orders.values():
        t = expected.setdefault(o.asset, [Decimal(0)] * 3)
        t[0] += o.escrow.locked - o.escrow.released - o.escrow.returned
        t[1] += o.escrow.released
        t[2] += o.escrow.returned
        lines = engine.ledger_lines(order=o.order)
        moves = sorted((line.movement, line.amount) for line in lines)
        settled = {OrderState.COMPLETED: "released", OrderState.CANCELLED: "returned"}
        want = [("locked", o.amount)]
        if o.state in settled:
            want.append((settled[OrderState(o.state)], o.amount))
        assert moves == sorted(want), (o.order, moves)
    got = {v.asset: [v.in_escrow, v.released, v.returned] for v in engine.ledgers()}
    assert got == expected


def check_deadlines(
    engine: Escrow, orders: dict[str, OrderView], appeals: dict[str, AppealView]
) -> None:
    expected = set()
    for o in orders.values():
        if o.state == OrderState.AWAITING_PAYMENT:
            expected.add(
                (PAYMENT_WINDOW, str(stream_id("order", o.order)), stamp(o.payment_deadline))
            )
    for a in appeals.values():
        stream = str(stream_id("appeal", a.appeal))
        if a.state == AppealState.AWAITING_PAYMENT_PROOF:
            assert a.proof_deadline is not None
            expected.add((PAYMENT_PROOF, stream, stamp(a.proof_deadline)))
        if a.state == AppealState.AWAITING_FREEZE_PROOF:
            assert a.freeze_deadline is not None
            expected.add((FREEZE_WINDOW, stream, stamp(a.freeze_deadline)))
    rows = engine.read.query("SELECT kind, stream, due_at FROM escrow_deadlines")
    assert {r for r in rows if r[0] != SANCTION_EXPIRY} == expected


def check_all(engine: Escrow, orders: set[str], appeals: set[str], traders: set[str]) -> None:
    at = engine.clock.now()
    order_views = check_orders(engine, orders)
    appeal_views = check_queue(engine, appeals, at)
    check_traders(engine, order_views, appeal_views, traders, at)
    check_traders(engine, order_views, appeal_views, set(list(traders)[:3]), at + WINDOW / 2)
    check_ledger(engine, order_views)
    check_deadlines(engine, order_views, appeal_views)


def check_rebuild(engine: Escrow) -> None:
    live = snapshot(engine)
    engine.projector.rebuild()
    assert snapshot(engine) == live, "a rebuild from the first event changed a read model"


# --- a small random driver ----------------------------------------------------------------


class Driver:
    """Random commands through the public API; refusals are part of the history too."""

    def __init__(self, engine: Escrow, clock: ManualClock, data: st.DataObject) -> None:
        self.engine, self.clock, self.data = engine, clock, data
        self.orders: set[str] = set()
        self.appeals: dict[str, str] = {}  # appeal -> order
        self.traders: set[str] = set()

    def draw(self, strategy: st.SearchStrategy[Any]) -> Any:
        return self.data.draw(strategy)

    def run(self, name: str, **fields: Any) -> bool:
        try:
            self.engine.run(name, fields)
        except EscrowError:
            return False
        return True

    def step(self) -> None:
        roll = self.draw(st.integers(0, 99))
        if roll < 18 or not self.orders:
            self.new_order()
        elif roll < 50:
            self.on_order(self.draw(st.sampled_from(sorted(self.orders))))
        elif roll < 85 and self.appeals:
            self.on_appeal(self.draw(st.sampled_from(sorted(self.appeals))))
        elif roll < 90:
            self.sanction()
        else:
            self.clock.advance(
                self.draw(
                    st.sampled_from(
                        [
                            timedelta(minutes=5),
                            timedelta(hours=20),
                            timedelta(days=3),
                            timedelta(days=20),
                        ]
                    )
                )
            )
            self.engine.tick()

    def new_order(self) -> None:
        seller, buyer = self.draw(st.permutations(TRADERS))[:2]
        ref = f"o{len(self.orders)}"
        fields = order_fields(
            ref,
            seller=seller,
            buyer=buyer,
            asset=self.draw(st.sampled_from(["USDT", "BTC"])),
            amount=str(self.draw(st.integers(1, 10**6))) + ".25",
            price="0.92",
            instant=self.draw(st.booleans()),
        )
        if self.run("create_order", **fields):
            self.orders.add(ref)
            self.traders.update((seller, buyer))

    def on_order(self, ref: str) -> None:
        view = self.engine.order(ref)
        actor = self.draw(st.sampled_from([view.seller, view.buyer]))
        allowed = self.engine.allowed(actor, order=ref) or ["release"]
        command = self.draw(st.sampled_from(sorted(allowed)))
        if command == "mark_paid":
            short = self.draw(st.booleans())
            paid = {"paid_amount": str(view.fiat_amount / 2)} if short else {}
            self.run("mark_paid", order=ref, by=actor, **paid)
        elif command == "open_appeal":
            reasons = BUYER_REASONS if actor == view.buyer else SELLER_REASONS
            appeal = f"a{len(self.appeals)}"
            reason = self.draw(st.sampled_from(reasons))
            if self.run("open_appeal", order=ref, by=actor, reason=reason, appeal=appeal):
                self.appeals[appeal] = ref
        else:
            self.run(command, order=ref, by=actor)

    def on_appeal(self, ref: str) -> None:
        view = self.engine.appeal(ref)
        order = self.engine.order(view.order)
        actor = self.draw(st.sampled_from([order.seller, order.buyer, *sorted(AGENTS)]))
        allowed = sorted(self.engine.allowed(actor, appeal=ref)) or ["resolve_appeal"]
        command = self.draw(st.sampled_from(allowed))
        fields: dict[str, Any] = {"appeal": ref, "by": actor}
        if command == "add_evidence":
            fields.update(description="screenshot", refs=["img-1"])
        elif command in ("request_refund", "report_refund"):
            fields["amount"] = str(self.draw(st.sampled_from(["1", "10.5", "100"])))
        elif command in ("submit_payment_proof", "submit_freeze_proof"):
            fields["refs"] = ["proof-1"]
        elif command == "resolve_appeal":
            outcome = self.draw(st.sampled_from(["release", "cancel", None]))
            if outcome is not None:
                fields["outcome"] = outcome
        self.run(command, **fields)

    def sanction(self) -> None:
        trader = self.draw(st.sampled_from(TRADERS))
        agent = sorted(AGENTS)[0]
        kind = self.draw(
            st.sampled_from(["p2p_suspension", "partial_ban", "trading_suspension_24h"])
        )
        if self.draw(st.booleans()) and kind != "trading_suspension_24h":
            if self.run("apply_sanction", trader=trader, by=agent, kind=kind):
                self.traders.add(trader)
        else:
            self.run("lift_sanction", trader=trader, by=agent, kind=kind)


# --- properties ---------------------------------------------------------------------------

PROPERTY = settings(
    max_examples=8,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
BACKENDS = ["memory", "sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]


@pytest.mark.parametrize("backend", BACKENDS)
@PROPERTY
@given(data=st.data(), steps=st.integers(10, 70))
def test_read_models_follow_random_commands(backend: str, data: st.DataObject, steps: int) -> None:
    with fresh_store(backend) as url:
        clock = ManualClock(START)
        with Escrow(url, clock=clock, agents=AGENTS) as engine:
            driver = Driver(engine, clock, data)
            for _ in range(steps):
                driver.step()
            check_all(engine, driver.orders, set(driver.appeals), driver.traders)
            check_rebuild(engine)
            check_all(engine, driver.orders, set(driver.appeals), driver.traders)


@pytest.mark.parametrize("backend", BACKENDS)
@settings(max_examples=3, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 10_000),
    orders=st.integers(15, 40),
    checks=st.sets(st.integers(1, 40), max_size=3),
)
def test_read_models_match_the_simulated_exchange(
    backend: str, seed: int, orders: int, checks: set[int]
) -> None:
    """Checked while stories are in flight (when the n-th story ends) and at the end."""
    with (
        fresh_store(backend) as url,
        Escrow(
            url, clock=ManualClock(START), agents=("agent-ana", "agent-ben", "agent-chen")
        ) as engine,
    ):

        def known() -> tuple[set[str], set[str], set[str]]:
            refs = {r.order for r in engine.orders(limit=100_000)}
            views = [engine.order(r) for r in refs]
            appeals = {a for v in views for a in v.appeals}
            traders = {t for v in views for t in (v.seller, v.buyer)}
            return refs, appeals, traders

        def progress(finished: int, events: int) -> None:
            if finished in checks:
                check_all(engine, *known())

        simulate(engine, orders, seed=seed, progress=progress)
        check_all(engine, *known())
        check_rebuild(engine)


# --- chosen histories: the figures a CS agent reads ---------------------------------------


def test_orders_view_filters_by_state_and_party(engine: Escrow) -> None:
    paid_order(engine, "o1")
    engine.run("create_order", order_fields("o2", seller="cat", buyer="bob"))
    engine.run("create_order", order_fields("o3", seller="cat", buyer="dan"))
    engine.run("cancel_order", {"order": "o3", "by": "dan"})
    assert [o.order for o in engine.orders()] == ["o3", "o2", "o1"] or {
        o.order for o in engine.orders()
    } == {"o1", "o2", "o3"}
    assert [o.order for o in engine.orders(state="paid")] == ["o1"]
    assert {o.order for o in engine.orders(trader="bob")} == {"o1", "o2"}
    assert {o.order for o in engine.orders(trader="cat")} == {"o2", "o3"}
    assert len(engine.orders(limit=2)) == 2
    row = engine.orders(state="cancelled")[0]
    assert (row.cancel_reason, row.closed_at) == ("buyer_cancelled", engine.clock.now())
    assert row.fiat_amount == Decimal("460.00")


def test_appeal_queue_shows_what_each_appeal_waits_on(engine: Escrow, clock: ManualClock) -> None:
    paid_order(engine, "o1", instant=False)
    engine.run(
        "open_appeal",
        {"order": "o1", "by": "alice", "reason": "payment_not_received", "appeal": "a1"},
    )
    clock.advance(timedelta(hours=3))
    paid_order(engine, "o2", seller="cat", buyer="dan")
    engine.run(
        "open_appeal", {"order": "o2", "by": "cat", "reason": "bank_account_frozen", "appeal": "a2"}
    )
    clock.advance(timedelta(hours=1))
    queue = engine.appeal_queue()
    assert [(i.appeal, i.waits_on, i.waits_for) for i in queue] == [
        ("a1", "review", "agent"),
        ("a2", "freeze_proof", "seller"),
    ]
    assert queue[0].age == timedelta(hours=4) and queue[0].due_at is None
    assert queue[1].due_at == queue[1].opened_at + timedelta(hours=24)
    engine.run("start_review", {"appeal": "a1", "by": "carol"})
    engine.run("request_payment_proof", {"appeal": "a1", "by": "carol"})
    item = engine.appeal_queue(agent="carol")[0]
    assert (item.appeal, item.waits_on, item.waits_for) == ("a1", "payment_proof", "buyer")
    assert item.due_at == clock.now() + timedelta(days=2)
    assert [i.appeal for i in engine.appeal_queue(older_than="2h")] == ["a1"]
    assert [i.appeal for i in engine.appeal_queue(reason="bank_account_frozen")] == ["a2"]
    assert [i.appeal for i in engine.appeal_queue(unassigned=True)] == ["a2"]
    clock.advance(timedelta(days=2))
    engine.tick()  # the proof deadline passes: resolved, out of the queue
    assert [i.appeal for i in engine.appeal_queue()] == ["a2"]


def test_trader_figures(engine: Escrow, clock: ManualClock) -> None:
    engine.run("create_order", order_fields("o1"))
    clock.advance(timedelta(minutes=4))
    engine.run("mark_paid", {"order": "o1", "by": "bob"})
    clock.advance(timedelta(minutes=10))
    engine.run("release", {"order": "o1", "by": "alice"})
    engine.run("create_order", order_fields("o2"))
    clock.advance(timedelta(minutes=2))
    engine.run("mark_paid", {"order": "o2", "by": "bob"})
    engine.run(
        "open_appeal",
        {"order": "o2", "by": "bob", "reason": "seller_not_releasing", "appeal": "a1"},
    )
    engine.run("start_review", {"appeal": "a1", "by": "carol"})
    engine.run("resolve_appeal", {"appeal": "a1", "by": "carol", "outcome": "release"})
    engine.run("create_order", order_fields("o3"))
    engine.run("cancel_order", {"order": "o3", "by": "bob"})
    engine.run("apply_sanction", {"trader": "alice", "by": "carol", "kind": "partial_ban"})
    bob, alice = engine.trader_stats("bob"), engine.trader_stats("alice")
    assert (bob.orders, bob.completed, bob.cancelled) == (3, 2, 1)
    assert bob.completion_rate_30d == Decimal("0.6667")
    assert bob.avg_pay_seconds == Decimal("180.000")  # (4 min + 2 min) / 2
    assert alice.avg_release_seconds == Decimal("600.000")  # o2 was released by CS
    assert (bob.appeals_opened, bob.appeals_won, bob.appeals_lost) == (1, 1, 0)
    assert (alice.appeals_opened, alice.appeals_won, alice.appeals_lost) == (0, 0, 1)
    assert [s.kind for s in alice.sanctions] == ["partial_ban"] and not bob.sanctions
    assert alice.sanctions[0].expires_at == clock.now() + timedelta(hours=24)
    assert engine.trader_stats("alice", clock.now() + timedelta(days=1)).sanctions == []
    later = engine.trader_stats("bob", clock.now() + timedelta(days=31))
    assert (later.completed_30d, later.cancelled_30d, later.completion_rate_30d) == (0, 0, None)
    assert later.completed == 2, "totals do not age"
    nobody = engine.trader_stats("zoe")
    assert (nobody.orders, nobody.completion_rate_30d, nobody.sanctions) == (0, None, [])
    assert [t.trader for t in engine.traders(sort="lost")][:1] == ["alice"]


def test_ledger_per_asset_and_lines(engine: Escrow) -> None:
    paid_order(engine, "o1")
    engine.run("release", {"order": "o1", "by": "alice"})
    engine.run("create_order", order_fields("o2", asset="BTC", amount="0.123456789012345678"))
    engine.run("cancel_order", {"order": "o2", "by": "bob"})
    engine.run("create_order", order_fields("o3", amount="999999999999999.999999999999999999"))
    totals = {t.asset: t for t in engine.ledgers()}
    assert totals["USDT"].in_escrow == Decimal("999999999999999.999999999999999999")
    assert totals["USDT"].released == Decimal(500)
    assert totals["BTC"].returned == Decimal("0.123456789012345678")
    assert totals["BTC"].in_escrow == 0
    assert [(line.movement, line.amount) for line in engine.ledger_lines(order="o2")] == [
        ("returned", Decimal("0.123456789012345678")),
        ("locked", Decimal("0.123456789012345678")),
    ]


def test_a_second_engine_sees_what_the_first_recorded(
    make_engine: Callable[..., Escrow], store_url: str
) -> None:
    if store_url == "memory:":
        pytest.skip("a memory store lives in one engine")
    first, second = make_engine(), make_engine()
    paid_order(first, "o1")
    assert [o.order for o in second.orders(state="paid")] == ["o1"]
    first.run("release", {"order": "o1", "by": "alice"})
    assert second.orders()[0].state == "completed"
    assert second.trader_stats("bob").completed == 1


def test_apply_refuses_events_another_writer_interleaved(engine: Escrow) -> None:
    """Ids first..last that are not all ours: the projector reads the log instead."""
    engine.run("create_order", order_fields("o1"))
    head = int(engine.app.recorder.max_notification_id() or 0)
    assert not engine.projector.apply(head + 1, [object(), object()], head + 3)
    assert engine.orders()[0].order == "o1"
