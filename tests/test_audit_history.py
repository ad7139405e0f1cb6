"""Reading history: state at a time or version equals what the engine showed at that moment;
diffs, timelines and exports tell what happened, on memory, SQLite and PostgreSQL."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest

from escrow.clock import ManualClock
from escrow.commands.api import Escrow
from escrow.commands.audit.export import export_records, write_export
from escrow.commands.audit.history import (
    History,
    diff,
    plain,
    snapshot,
    timeline,
)
from escrow.errors import NotFound, ValidationError
from tests.helpers import order_fields


@pytest.fixture
def history(engine: Escrow, store_url: str) -> Iterator[History]:
    """The engine's store as an auditor opens it: read-only (memory: the engine's own app)."""
    opened = History(engine.app) if store_url == "memory:" else History.open(store_url)
    yield opened
    opened.close()


def drive(engine: Escrow, clock: ManualClock) -> list[tuple[Any, dict[str, dict[str, Any]]]]:
    """A C4 story, one command per minute; after each step, what the API showed then."""
    seen: list[tuple[Any, dict[str, dict[str, Any]]]] = []

    def step(name: str, fields: dict[str, Any] | None = None) -> None:
        if name == "tick":
            engine.tick()
        else:
            engine.run(name, fields or {})
        views = {"order": plain(engine.order("o1").model_dump())}
        if engine.order("o1").appeals:
            views["appeal"] = plain(engine.appeal("a1").model_dump())
            views["trader"] = plain(engine.trader("bob").model_dump())
        seen.append((clock.now(), views))
        clock.advance(timedelta(minutes=1))

    step("create_order", order_fields("o1", amount="1234.567890123456789"))
    step("mark_paid", {"order": "o1", "by": "bob"})
    step(
        "open_appeal",
        {"order": "o1", "appeal": "a1", "by": "alice", "reason": "bank_account_frozen"},
    )
    step(
        "add_evidence",
        {"appeal": "a1", "by": "alice", "description": "bank letter", "refs": ["f1"]},
    )
    clock.advance(timedelta(hours=24))
    step("tick")  # the freeze window closes, bob's S2 expires
    step("resolve_appeal", {"appeal": "a1", "by": "carol", "outcome": "cancel"})
    return seen


def test_state_at_any_time_is_what_the_engine_showed_then(
    engine: Escrow, clock: ManualClock, history: History
) -> None:
    seen = drive(engine, clock)
    for moment, views in seen:
        for kind, ref in (("order", "o1"), ("appeal", "a1"), ("trader", "bob")):
            if kind not in views:
                continue
            for asked in (moment, moment + timedelta(seconds=30)):  # between two commands too
                state = snapshot(history, kind, ref, at=asked).state
                state.pop("history", None)  # the trader's full sanction list, not in the view
                assert state == views[kind], (kind, asked)


def test_state_at_a_version_and_its_bounds(
    engine: Escrow, clock: ManualClock, history: History
) -> None:
    seen = drive(engine, clock)
    final = engine.order("o1")
    for version in range(1, final.version + 1):
        snap = snapshot(history, "order", "o1", version=version)
        assert snap.version == snap.state["version"] == version
    paid = snapshot(history, "order", "o1", version=2)
    assert paid.state["state"] == "paid" and paid.recorded_at == seen[1][0]
    assert snapshot(history, "order", "o1").state == plain(final.model_dump())
    assert final.model_dump(mode="json")["paid_at"] == paid.state["paid_at"]
    with pytest.raises(NotFound, match="did not exist yet"):
        snapshot(history, "order", "o1", at=seen[0][0] - timedelta(seconds=1))
    with pytest.raises(NotFound, match="no version 99"):
        snapshot(history, "order", "o1", version=99)
    with pytest.raises(NotFound):
        snapshot(history, "order", "nope", at=seen[0][0])
    with pytest.raises(ValidationError):
        snapshot(history, "order", "o1", at=seen[0][0], version=1)


def test_diff_names_the_fields_that_changed(
    engine: Escrow, clock: ManualClock, history: History
) -> None:
    seen = drive(engine, clock)
    before = snapshot(history, "order", "o1", at=seen[1][0])  # paid
    after = snapshot(history, "order", "o1")  # cancelled by the resolution
    changes = {c.field: (c.before, c.after) for c in diff(before, after)}
    assert changes["state"] == ("paid", "cancelled")
    assert changes["escrow.returned"] == ("0", "1234.567890123456789")
    assert changes["appeals"] == ([], ["a1"])
    assert "amount" not in changes and "seller" not in changes
    assert diff(after, after) == []


def test_timeline_shows_order_appeal_and_sanctions_in_time_order(
    engine: Escrow, clock: ManualClock, history: History
) -> None:
    drive(engine, clock)
    entries = timeline(history, "o1")
    by_time: dict[Any, set[tuple[str, str]]] = {}
    for e in entries:
        by_time.setdefault(e.at, set()).add((e.kind, e.event))
    assert list(by_time.values()) == [
        {("order", "Order.Created")},
        {("order", "Order.MarkedPaid")},
        {
            ("appeal", "Appeal.Opened"),
            ("order", "Order.AppealOpened"),
            ("trader", "Trader.Sanctioned"),
        },
        {("appeal", "Appeal.EvidenceAdded")},
        {("appeal", "Appeal.FreezeWindowClosed"), ("trader", "Trader.SanctionExpired")},
        {("appeal", "Appeal.Resolved"), ("order", "Order.AppealResolved")},
    ]
    assert [e.id for e in entries] == sorted(e.id for e in entries)  # as committed
    assert [e.at for e in entries] == sorted(e.at for e in entries)
    sanction = next(e for e in entries if e.event == "Trader.Sanctioned")
    assert (sanction.ref, sanction.actor, sanction.rule) == ("bob", "alice", "C4")
    closed = next(e for e in entries if e.event == "Appeal.FreezeWindowClosed")
    assert (closed.actor, closed.rule) == ("system", "R7")
    assert entries[0].amounts["amount"] == Decimal("1234.567890123456789")
    assert entries[-1].state == "cancelled" and entries[-1].actor == "carol"
    data = json.loads(json.dumps([e.as_json() for e in entries]))
    assert data[0]["amounts"]["amount"] == "1234.567890123456789"
    assert [d["fields"].get("appeal") for d in data if d["event"] == "Trader.Sanctioned"] == ["a1"]
    with pytest.raises(NotFound):
        timeline(history, "nope")


def test_timeline_leaves_out_other_orders_and_their_sanctions(
    engine: Escrow, clock: ManualClock, history: History
) -> None:
    drive(engine, clock)
    engine.run("create_order", order_fields("o2", buyer="erin"))
    engine.run("mark_paid", {"order": "o2", "by": "erin"})
    engine.run(
        "open_appeal",
        {"order": "o2", "appeal": "a2", "by": "alice", "reason": "bank_account_frozen"},
    )
    refs = {(e.kind, e.ref) for e in timeline(history, "o1")}
    assert refs == {("order", "o1"), ("appeal", "a1"), ("trader", "bob")}


def test_export_streams_every_event_with_exact_amounts(
    engine: Escrow, clock: ManualClock, history: History
) -> None:
    seen = drive(engine, clock)
    records = list(export_records(history))
    assert len(records) == int(engine.app.recorder.max_notification_id() or 0)
    created = records[0]
    assert (created["kind"], created["ref"], created["type"]) == (
        "order",
        "o1",
        "escrow:Order.Created.v1",
    )
    assert created["data"]["amount"] == "1234.567890123456789"
    assert created["data"]["fiat_amount"] == str(Decimal("1234.567890123456789") * Decimal("0.92"))
    assert {r["ref"] for r in records if r["kind"] == "trader"} == {"bob"}
    assert all(r["ref"] for r in records)
    window = list(export_records(history, since=seen[1][0], until=seen[2][0]))
    assert sorted(r["type"] for r in window) == [
        "escrow:Appeal.Opened.v1",
        "escrow:Order.AppealOpened.v1",
        "escrow:Order.MarkedPaid.v1",
        "escrow:Trader.Registered.v1",
        "escrow:Trader.Sanctioned.v1",
    ]
    only = list(export_records(history, order="o1", since=seen[-1][0]))
    assert sorted(r["type"] for r in only) == [
        "escrow:Appeal.Resolved.v1",
        "escrow:Order.AppealResolved.v1",
    ]
    (cancelled,) = [r for r in only if r["kind"] == "order"]
    assert cancelled["movement"] == {
        "escrow": "returned",
        "asset": "USDT",
        "amount": "1234.567890123456789",
        "to": "alice",
    }
    assert cancelled == next(r for r in records if r["position"] == cancelled["position"])

    out = io.StringIO()
    assert write_export(export_records(history), "jsonl", out) == len(records)
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    assert lines == records
    out = io.StringIO()
    write_export(export_records(history), "csv", out)
    rows = list(csv.DictReader(io.StringIO(out.getvalue())))
    assert len(rows) == len(records)
    assert json.loads(rows[0]["data"])["amount"] == "1234.567890123456789"
    assert rows[0]["version"] == "1" and rows[0]["rule"] == "O1"
    assert rows[-1]["movement_escrow"] == "returned" and rows[-1]["movement_to"] == "alice"
