"""When the read-model tables follow the commands (docs/projections.md, "When read models are
written"): inline on SQLite, in the command's own transaction; deferred on memory and
PostgreSQL, brought up to date by any query, by `tick`, by `catch_up` or by
`escrow projections run`; inline on PostgreSQL when asked. Rows the models hold between
commands must never outlive a change made by another engine."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from datetime import timedelta

import pytest

from escrow.clock import ManualClock
from escrow.commands.api import Escrow
from escrow.commands.simulation.simulate import simulate
from escrow.errors import ValidationError
from escrow.projections.orders import Orders
from tests.helpers import event_count, order_fields
from tests.test_projections import check_rebuild, snapshot


def positions(engine: Escrow) -> set[int]:
    return {int(p) for (p,) in engine.read.query("SELECT position FROM escrow_tracking")}


def lifecycle(engine: Escrow, ref: str) -> None:
    engine.run("create_order", order_fields(ref))
    engine.run("mark_paid", {"order": ref, "by": "bob"})
    engine.run("release", {"order": ref, "by": "alice"})


def test_sqlite_tables_are_current_when_a_command_returns(
    make_engine: Callable[..., Escrow], store_url: str
) -> None:
    if not store_url.startswith("sqlite"):
        pytest.skip("SQLite's default")
    engine = make_engine()
    assert engine.read_models == "inline"
    outside = sqlite3.connect(store_url.removeprefix("sqlite:///"))  # another program
    try:
        for name, fields, state in [
            ("create_order", order_fields("o1"), "awaiting_payment"),
            ("mark_paid", {"order": "o1", "by": "bob"}, "paid"),
            ("release", {"order": "o1", "by": "alice"}, "completed"),
        ]:
            engine.run(name, fields)
            row = outside.execute("SELECT state FROM escrow_orders WHERE ref = 'o1'").fetchone()
            assert row == (state,)
            tracked = {p for (p,) in outside.execute("SELECT position FROM escrow_tracking")}
            assert tracked == {event_count(engine)}
    finally:
        outside.close()


def test_deferred_tables_are_brought_up_to_date_by_any_query(
    make_engine: Callable[..., Escrow], store_url: str
) -> None:
    if store_url.startswith("sqlite"):
        pytest.skip("SQLite is inline")
    engine = make_engine()
    assert engine.read_models == "deferred"
    before = positions(engine)
    lifecycle(engine, "o1")
    assert positions(engine) == before, "a deferred command wrote the read models"
    assert [(o.order, o.state) for o in engine.orders()] == [("o1", "completed")]
    assert positions(engine) == {event_count(engine)}
    lifecycle(engine, "o2")
    assert engine.catch_up() == 3
    assert engine.catch_up() == 0
    assert engine.ledger("USDT").released == 1000


def test_inline_on_postgresql_when_asked(
    make_engine: Callable[..., Escrow], store_url: str, clock: ManualClock
) -> None:
    if not store_url.startswith("postgresql"):
        pytest.skip("PostgreSQL's option")
    engine = make_engine(read_models="inline")
    lifecycle(engine, "o1")
    assert positions(engine) == {event_count(engine)}
    simulate(engine, 8, seed=3)
    assert positions(engine) == {event_count(engine)}
    check_rebuild(engine)


@pytest.mark.parametrize("mode", ["inline", "deferred"])
def test_two_engines_taking_turns_on_the_same_orders_keep_the_tables_exact(
    make_engine: Callable[..., Escrow], store_url: str, clock: ManualClock, mode: str
) -> None:
    """Each engine holds the rows it last wrote; the other engine's commands change them."""
    if store_url == "memory:":
        pytest.skip("a memory store lives in one engine")
    engines = [make_engine(read_models=mode), make_engine(read_models=mode)]
    steps: list[tuple[str, dict[str, str]]] = []
    for ref in ("o1", "o2", "o3"):
        steps += [
            ("create_order", order_fields(ref)),
            ("mark_paid", {"order": ref, "by": "bob"}),
            (
                "open_appeal",
                {"order": ref, "by": "bob", "reason": "seller_not_releasing", "appeal": f"a-{ref}"},
            ),
            ("cancel_appeal", {"appeal": f"a-{ref}", "by": "bob"}),
            ("release", {"order": ref, "by": "alice"}),
        ]
    for i, (name, fields) in enumerate(steps):
        engine = engines[i % 2]
        engine.run(name, fields)
        engine.orders()  # deferred: this engine projects now, with the rows it holds
        clock.advance(timedelta(minutes=1))
    for engine in engines:
        engine.catch_up()
    assert snapshot(engines[0]) == snapshot(engines[1])
    assert {(o.order, o.state) for o in engines[1].orders()} == {
        ("o1", "completed"),
        ("o2", "completed"),
        ("o3", "completed"),
    }
    assert engines[0].trader_stats("bob").appeals_opened == 3
    check_rebuild(engines[0])


def test_a_read_model_that_fails_keeps_the_events_and_says_so(
    make_engine: Callable[..., Escrow], store_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = make_engine(read_models="inline")
    engine.run("create_order", order_fields("o1"))

    def broken(self: Orders, cur: object, items: object) -> None:
        raise RuntimeError("read model bug")

    with monkeypatch.context() as patched:
        patched.setattr(Orders, "project", broken)
        with pytest.raises(RuntimeError, match="read model bug"):
            engine.run("mark_paid", {"order": "o1", "by": "bob"})
    assert engine.order("o1").state == "paid", "the events were not kept"
    assert engine.orders()[0].state == "paid", "catch_up did not mend the read model"
    assert positions(engine) == {event_count(engine)}


def test_an_unknown_mode_is_refused(store_url: str) -> None:
    with pytest.raises(ValidationError, match="read_models"):
        Escrow(store_url, read_models="sometimes")


def test_a_rebuild_in_small_pages_many_to_a_transaction_equals_the_live_tables(
    make_engine: Callable[..., Escrow],
) -> None:
    """A rebuild commits several pages per transaction; pages of 7 events split stories
    across pages and transactions at every point."""
    engine = make_engine(read_models="inline")
    simulate(engine, 10, seed=11)
    engine.projector.batch = 7
    check_rebuild(engine)
    assert positions(engine) == {event_count(engine)}
