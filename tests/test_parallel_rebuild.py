"""A rebuild of a long log runs groups of read models in processes of their own
(`projections.parallel`): the tables and positions it leaves must be those of a rebuild in one
process, and a failing group must leave a SQLite store as it was."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import pytest

from commands.api import Escrow
from commands.simulate import simulate
from projections import parallel
from projections.base import Item, Projector
from projections.catalog import read_models
from projections.orders import Orders
from projections.readstore import Cursor
from tests.helpers import event_count
from tests.test_projections import snapshot


@pytest.fixture
def engine(
    store_url: str, make_engine: Callable[..., Escrow], monkeypatch: pytest.MonkeyPatch
) -> Escrow:
    if store_url == "memory:":
        pytest.skip("a memory store lives in one process")
    monkeypatch.setattr(parallel, "PARALLEL_FROM", 0)
    built = make_engine()
    simulate(built, 12, seed=5)
    built.catch_up()  # deferred on PostgreSQL: the tables follow at the next query
    return built


def test_a_parallel_rebuild_equals_the_live_tables(engine: Escrow, store_url: str) -> None:
    assert parallel.worth_it(engine.projector, engine.projector.models)
    live = snapshot(engine)
    read: list[int] = []
    assert engine.projector.rebuild(progress=read.append) == event_count(engine)
    assert snapshot(engine) == live
    assert sum(read) == event_count(engine)
    positions = engine.read.query("SELECT position FROM escrow_tracking")
    assert {int(p) for (p,) in positions} == {event_count(engine)}
    if store_url.startswith("sqlite:///"):  # the scratch files are gone
        folder = Path(store_url.removeprefix("sqlite:///")).parent
        assert not list(folder.glob(".escrow-rebuild-*"))


def test_the_groups_balance_the_models_cost() -> None:
    models = read_models()
    parts = parallel.groups(models, 2)
    assert sorted(m.name for part in parts for m in part) == sorted(m.name for m in models)
    costs = [sum(m.cost for m in part) for part in parts]
    assert max(costs) - min(costs) <= min(m.cost for m in models)
    assert [[m.name for m in part] for part in parallel.groups(models, 9)] == [
        [m.name] for m in sorted(models, key=lambda m: -m.cost)
    ]


class Broken(Orders):
    """Fails in the rebuild's process (the class is pickled there)."""

    def project(self, cur: Cursor, items: Sequence[Item]) -> None:
        raise ValueError("broken model")


def test_a_failing_group_raises_and_leaves_a_sqlite_store_as_it_was(
    engine: Escrow, store_url: str
) -> None:
    if not store_url.startswith("sqlite:///"):
        pytest.skip("PostgreSQL groups rebuild in place, as one process does")
    live = snapshot(engine)
    models = [m for m in read_models() if m.name != "orders"]
    projector = Projector(engine.app, engine.read, [*models, Broken()])
    with pytest.raises(RuntimeError, match="broken model"):
        projector.rebuild()
    assert snapshot(engine) == live
