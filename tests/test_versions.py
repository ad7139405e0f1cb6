"""Versions of what is stored (issue 19): read-model tables rebuilt when their schema version
changes, on stores with and without the version table, once under concurrent openings."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator

import pytest

from commands import Escrow
from commands.simulation.simulate import simulate, simulation_engine
from projections.catalog import read_models
from projections.orders import Orders
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
