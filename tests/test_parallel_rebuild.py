"""A rebuild of a long log runs in processes of their own, each over a share of the streams
(`escrow.projections.parallel`): the tables and positions it leaves must be those the engine kept up
to date command by command (tables of sums added up across the shares), and a failing share
must leave the store as it was."""

from __future__ import annotations

import gc
import os
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest

from escrow.commands.api import Escrow
from escrow.commands.simulation.simulate import simulate
from escrow.projections import parallel
from escrow.projections.base import Item, Projector
from escrow.projections.catalog import read_models
from escrow.projections.orders import Orders
from escrow.projections.readstore import Cursor, SQLiteReadStore
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


def test_a_parallel_rebuild_equals_the_live_tables(engine: Escrow) -> None:
    assert parallel.worth_it(engine.projector, engine.projector.models)
    live = snapshot(engine)
    read: list[int] = []
    assert engine.projector.rebuild(progress=read.append) == event_count(engine)
    assert snapshot(engine) == live
    assert sum(read) == event_count(engine)
    positions = engine.read.query("SELECT position FROM escrow_tracking")
    assert {int(p) for (p,) in positions} == {event_count(engine)}
    assert not _scratch_left(engine)


def test_the_caller_keeps_its_garbage_collector_settings(engine: Escrow) -> None:
    """The share replayed in the caller's process makes collections rare while it runs
    (`parallel._rare_collections`); an embedding backend gets its own settings back."""
    before = gc.get_threshold()
    gc.set_threshold(900, 11, 12)
    try:
        engine.projector.rebuild()
        assert gc.get_threshold() == (900, 11, 12)
        assert gc.get_freeze_count() == 0
    finally:
        gc.set_threshold(*before)


def test_every_share_holds_part_of_the_sums(engine: Escrow) -> None:
    """The traders' counters come from orders of several shares: a rebuild that kept one
    share's rows instead of adding them up would show fewer orders than the live table."""
    shares = [{str(r[1]) for r in engine.projector.log.rows(part=(k, 2))} for k in range(2)]
    orders = engine.read.query("SELECT stream, seller, buyer FROM escrow_trader_orders")
    by_trader: dict[str, set[int]] = {}
    for stream, seller, buyer in orders:
        share = next(k for k in range(2) if stream in shares[k])
        by_trader.setdefault(seller, set()).add(share)
        by_trader.setdefault(buyer, set()).add(share)
    assert any(len(found) == 2 for found in by_trader.values())
    live = snapshot(engine)
    engine.projector.rebuild()
    assert snapshot(engine) == live


def _scratch_left(engine: Escrow) -> list[str]:
    """Scratch files beside a SQLite store, scratch schemas in a PostgreSQL database."""
    store = engine.read
    if isinstance(store, SQLiteReadStore):
        return [str(p) for p in Path(store.path).parent.glob(".escrow-rebuild-*")]
    return [
        name
        for (name,) in store.query(
            "SELECT nspname FROM pg_namespace WHERE nspname LIKE ?", ["escrow_rebuild_%"]
        )
    ]


class Broken(Orders):
    """Fails in every share, or (`elsewhere`) only in the processes the rebuild starts: the
    share this process replays itself then succeeds, and learns of the others' failure."""

    def __init__(self, elsewhere: bool = False) -> None:
        super().__init__()
        self.pid = os.getpid() if elsewhere else None  # pickled with the model

    def project(self, cur: Cursor, items: Sequence[Item]) -> None:
        if self.pid is None or os.getpid() != self.pid:
            raise ValueError("broken model")


@pytest.mark.parametrize("elsewhere", [False, True], ids=["everywhere", "elsewhere"])
def test_a_failing_share_raises_and_leaves_the_store_as_it_was(
    engine: Escrow, elsewhere: bool
) -> None:
    live = snapshot(engine)
    models = [m for m in read_models() if m.name != "orders"]
    projector = Projector(engine.app, engine.read, [*models, Broken(elsewhere)])
    with pytest.raises(parallel.ShareFailed, match="broken model"):
        projector.rebuild()
    assert snapshot(engine) == live
    assert not _scratch_left(engine)
