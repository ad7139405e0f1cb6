"""Versions of what is stored (issue 19): read-model tables rebuilt when their schema version
changes, on stores with and without the version table, once under concurrent openings."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest
from eventsourcing.persistence import StoredEvent

from escrow.commands import CreateOrder, Escrow, ManualClock, MarkPaid, OpenAppeal
from escrow.commands.audit.history import History
from escrow.commands.audit.verify import verify
from escrow.commands.simulation.simulate import simulate, simulation_engine
from escrow.order import Order
from escrow.projections.catalog import read_models
from escrow.projections.orders import Orders
from escrow.recording import stream_id
from tests.helpers import order_fields
from tests.test_projections import fresh_store

Tables = dict[str, list[str]]


@pytest.fixture(params=["sqlite", "postgresql"])
def filled(request: pytest.FixtureRequest) -> Iterator[tuple[str, Tables]]:
    """A store filled by the simulation, and its read-model tables as written then."""
    with fresh_store(request.param) as url:
        engine = simulation_engine(url)
        try:
            simulate(engine, 40, seed=3)
            engine.catch_up()
            tables = dump(engine)
        finally:
            engine.close()
        yield url, tables


def dump(engine: Escrow) -> Tables:
    """Every row of every read-model table, in a stable order."""
    return {
        table: sorted(repr(row) for row in engine.read.query(f"SELECT * FROM {table}"))
        for model in read_models()
        for table in model.tables
    }


def versions(engine: Escrow) -> dict[str, int]:
    return dict(engine.read.query("SELECT name, version FROM escrow_read_models"))


def corrupt(engine: Escrow) -> None:
    """What an older version's rows would look like: not what the code writes now."""
    with engine.read.transaction() as cur:
        cur.execute("UPDATE escrow_orders SET state = 'written_by_v1'")


def test_every_model_records_its_version(filled: tuple[str, Tables]) -> None:
    url, _ = filled
    with Escrow(url) as engine:
        assert versions(engine) == {m.name: m.version for m in read_models()}


def test_an_older_read_model_is_rebuilt_on_open(filled: tuple[str, Tables]) -> None:
    url, tables = filled
    with Escrow(url) as engine:
        corrupt(engine)
        with engine.read.transaction() as cur:
            cur.execute("UPDATE escrow_read_models SET version = 0 WHERE name = 'orders'")
    with Escrow(url) as engine:
        assert dump(engine) == tables  # equal to the tables a fresh rebuild writes
        assert versions(engine)["orders"] == Orders.version


def test_a_store_written_before_versions_were_kept(
    filled: tuple[str, Tables], monkeypatch: pytest.MonkeyPatch
) -> None:
    """No version table: the tables count as version 1; a model now at version 2 is rebuilt,
    the others are kept as they are."""
    url, tables = filled
    with Escrow(url) as engine:
        corrupt(engine)
        with engine.read.transaction() as cur:
            cur.execute("DROP TABLE escrow_read_models")
    with Escrow(url) as engine:  # every model at version 1: nothing rebuilt
        assert dump(engine)["escrow_orders"] != tables["escrow_orders"]
        with engine.read.transaction() as cur:
            cur.execute("DROP TABLE escrow_read_models")
    monkeypatch.setattr(Orders, "version", 2)
    with Escrow(url) as engine:
        assert dump(engine) == tables
        assert versions(engine)["orders"] == 2 and versions(engine)["ledger"] == 1


class Said(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def test_concurrent_openings_rebuild_once(
    filled: tuple[str, Tables], monkeypatch: pytest.MonkeyPatch
) -> None:
    url, tables = filled
    with Escrow(url) as engine:
        corrupt(engine)
    monkeypatch.setattr(Orders, "version", 7)
    opened: list[Escrow] = []
    failures: list[BaseException] = []

    def open_one() -> None:
        try:
            opened.append(Escrow(url))
        except BaseException as e:
            failures.append(e)

    said = Said()
    logger = logging.getLogger("escrow.projections")
    logger.addHandler(said)
    try:
        threads = [threading.Thread(target=open_one) for _ in range(3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        logger.removeHandler(said)
    try:
        assert failures == []
        rebuilt = [m for m in said.messages if "rebuilding it from the log" in m]
        assert len(rebuilt) == 1
        for engine in opened:
            engine.catch_up()
            assert dump(engine) == tables
    finally:
        for engine in opened:
            engine.close()


# --- event schema versions: an upcaster, on a store written by the previous version ---------

# Written by the code before Order.AppealOpened recorded the reason (class version 1), with
# the script in its header; the events as stored, one JSON object per line.
BEFORE = Path(__file__).parent / "fixtures" / "store-before-appeal-reason.jsonl"


@pytest.fixture(params=["sqlite", "postgresql"])
def old_store(request: pytest.FixtureRequest) -> Iterator[str]:
    """A store holding exactly the events the previous version stored."""
    rows = [json.loads(line) for line in BEFORE.read_text().splitlines() if line.startswith("{")]
    with fresh_store(request.param) as url:
        with Escrow(url) as engine:
            engine.app.recorder.insert_events(
                [
                    StoredEvent(UUID(r["stream"]), r["version"], r["topic"], r["state"].encode())
                    for r in rows
                ]
            )
        yield url


def appeal_openings(engine: Escrow, order: str) -> list[Any]:
    events = engine.app.repository.event_store.get(stream_id("order", order))
    return [e for e in events if isinstance(e, Order.AppealOpened)]


def test_old_events_are_upcast_and_still_verify(old_store: str, clock: ManualClock) -> None:
    clock.set(datetime(2026, 3, 1, 11, 0, tzinfo=UTC))
    with Escrow(old_store, clock=clock) as engine:
        assert engine.order("P2P-1").state == "completed"
        assert engine.order("P2P-2").state == "in_appeal"
        assert [o.order for o in engine.orders(state="in_appeal")] == ["P2P-2"]
        (old,) = appeal_openings(engine, "P2P-1")
        assert (old.appeal, old.reason) == ("AP-1", None)  # v1: not recorded on the order
        engine.execute(CreateOrder(**order_fields("P2P-3")))
        engine.execute(MarkPaid(order="P2P-3", by="bob"))
        engine.execute(
            OpenAppeal(order="P2P-3", by="bob", reason="seller_not_releasing", appeal="AP-3")
        )
        (new,) = appeal_openings(engine, "P2P-3")
        assert new.reason == "seller_not_releasing"
        stored = [
            json.loads(e.state)
            for order in ("P2P-1", "P2P-2", "P2P-3")
            for e in engine.app.recorder.select_events(stream_id("order", order))
            if e.topic == Order.AppealOpened.TOPIC
        ]
    assert [s.get("class_version", 1) for s in stored] == [1, 1, 2]  # old ones left as stored
    assert "reason" not in stored[0] and stored[2]["reason"] == "seller_not_releasing"
    history = History.open(old_store)
    try:
        report = verify(history)
    finally:
        history.close()
    assert report.clean, [f.message for f in report.findings]
