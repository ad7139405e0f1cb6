"""An engine decides a command on the streams it wrote last without reading them back
(commands/recent.py). Another engine, as another process would, moves those streams in
between: every decision must still be the one a fresh read gives, and a refusal must store
nothing."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given, note, settings
from hypothesis import strategies as st

from escrow.clock import ManualClock
from escrow.commands.api import Escrow
from escrow.errors import EscrowError
from tests.conftest import AGENTS, START
from tests.helpers import assert_order, do, event_count, order_fields, paid_order, refused
from tests.strategies import Step, World, draw_step
from tests.test_properties import SETTINGS, fresh_store, require_postgres


@pytest.fixture
def engines(make_engine: Callable[..., Escrow], store_url: str) -> tuple[Escrow, Escrow]:
    if store_url == "memory:":
        pytest.skip("a memory store lives in one engine")
    return make_engine(), make_engine()


def test_an_order_moved_by_another_engine_is_decided_on_its_new_state(
    engines: tuple[Escrow, Escrow],
) -> None:
    first, second = engines
    paid_order(first, "o1")  # `first` keeps o1 as paid
    do(second, "open_appeal", order="o1", by="bob", reason="seller_not_releasing", appeal="a1")
    refused(first, "release_blocked_by_appeal", "release", order="o1", by="alice")
    assert_order(first, "in_appeal", "locked", open_appeal="a1")


def test_an_order_closed_by_another_engine_cannot_be_released_twice(
    engines: tuple[Escrow, Escrow],
) -> None:
    first, second = engines
    paid_order(first, "o1")
    do(second, "release", order="o1", by="alice")
    refused(first, "invalid_state", "release", order="o1", by="alice")
    assert_order(first, "completed", "released")


def test_a_sanction_recorded_by_another_engine_stops_the_next_order_at_once(
    engines: tuple[Escrow, Escrow],
) -> None:
    """O7 only reads the trader streams: their save cannot reveal that they moved."""
    first, second = engines
    do(first, "apply_sanction", trader="alice", by="carol", kind="p2p_suspension")
    do(first, "lift_sanction", trader="alice", by="carol", kind="p2p_suspension")
    # `first` keeps alice's stream as it saved it: free to trade
    do(second, "apply_sanction", trader="alice", by="dave", kind="permanent_suspension")
    refused(first, "trader_suspended", "create_order", **order_fields("o1"))


def test_a_sanction_lifted_by_another_engine_frees_the_trader_at_once(
    engines: tuple[Escrow, Escrow],
) -> None:
    """A refusal decided on a kept stream is only returned once the stream is checked."""
    first, second = engines
    do(first, "apply_sanction", trader="alice", by="carol", kind="p2p_suspension")
    do(second, "lift_sanction", trader="alice", by="dave", kind="p2p_suspension")
    before = event_count(first)
    do(first, "create_order", **order_fields("o1"))
    assert event_count(first) == before + 1
    assert first.order("o1").state == "awaiting_payment"


# --- random turns: two engines lending kept aggregates decide as one that reads fresh --------


def _answer(engine: Escrow, step: Step) -> tuple[str, Any]:
    """What a step did: the events recorded, the refusal's code, or the deadlines fired."""
    if step.name == "wait":
        return "fired", [_events(o.recorded) for o in engine.tick()]
    name, fields = step.name, dict(step.fields)
    if name == "resend":
        sent = step.fields["sent"]
        name, fields = sent.name, dict(sent.fields)
    try:
        outcome = engine.run(name, fields)
    except EscrowError as refusal:
        return "refused", refusal.code
    return "recorded", _events(outcome.recorded)


def _events(recorded: list[Any]) -> list[tuple[str, str, int, str, str | None]]:
    return [(r.stream, r.ref, r.version, r.event, r.rule) for r in recorded]


def _learn(world: World, engine: Escrow, answer: tuple[str, Any]) -> None:
    """Keep the generator's view of the orders, appeals and traders current."""
    kind, what = answer
    batches = what if kind == "fired" else [what] if kind == "recorded" else []
    for stream, ref, *_ in (event for batch in batches for event in batch):
        if stream == "order":
            world.orders[ref] = engine.order(ref)
        elif stream == "appeal":
            world.appeals[ref] = engine.appeal(ref)
        elif stream == "trader":
            world.traders[ref] = engine.trader(ref)


def play_turns(backend: str, data: st.DataObject) -> None:
    """Every step runs on one of two engines sharing a store, picked at random, and on an
    engine of its own that keeps nothing: each must do exactly what the latter does."""
    with fresh_store(backend) as shared, fresh_store(backend) as alone:
        clock = ManualClock(START)
        turns = [Escrow(shared, clock=clock, agents=AGENTS) for _ in range(2)]
        fresh = Escrow(alone, clock=clock, agents=AGENTS, recent_streams=0)
        world = World()
        try:
            for _ in range(data.draw(st.integers(20, 60), label="steps")):
                step = draw_step(data, world)
                if step.name == "resend":
                    step = Step("resend", {"sent": world.sent[step.fields["step"]]})
                engine = turns[data.draw(st.integers(0, 1), label="engine")]
                note(f"{turns.index(engine)}: {step}")
                if step.wait is not None:
                    clock.advance(step.wait)
                expected = _answer(fresh, step)
                assert _answer(engine, step) == expected
                if expected[0] == "recorded" and "command_id" in step.fields:
                    world.sent.append(step)
                _learn(world, fresh, expected)
        finally:
            for engine in (*turns, fresh):
                engine.close()


@settings(SETTINGS, max_examples=25)
@given(data=st.data())
def test_two_engines_taking_random_turns_decide_as_one_reading_fresh_on_sqlite(
    data: st.DataObject,
) -> None:
    play_turns("sqlite", data)


@settings(SETTINGS, max_examples=10)
@given(data=st.data())
def _postgres_turns(data: st.DataObject) -> None:
    play_turns("postgresql", data)


def test_two_engines_taking_random_turns_decide_as_one_reading_fresh_on_postgresql() -> None:
    require_postgres()
    _postgres_turns()
