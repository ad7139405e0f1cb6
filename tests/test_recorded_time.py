"""Recorded time never goes backwards, in a stream or in the log: `tick` cannot run ahead of
the engine's clock, a stream is never stamped before its last event whatever a process's clock
says, an engine whose clock steps back keeps recording at its latest time, and `verify` names
a step back when history holds one anyway."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import datetime, timedelta

import pytest

from escrow.application import project
from escrow.commands import Escrow, ManualClock, ValidationError
from escrow.commands.audit.history import History
from escrow.commands.audit.verify import verify
from escrow.order import Order
from escrow.recording import stream_id
from tests.conftest import AGENTS, START
from tests.helpers import event_count, order_fields, paid_order


def times(engine: Escrow) -> list[datetime]:
    """Every event's time, in log order."""
    with History(engine.app) as history:
        return [history.decode(state)["timestamp"] for *_, state in history.rows()]


def test_tick_ahead_of_the_clock_is_refused_and_fires_nothing(
    engine: Escrow, clock: ManualClock
) -> None:
    engine.run("create_order", order_fields("o1"))  # its payment window closes in 15 minutes
    before = event_count(engine)
    with pytest.raises(ValidationError) as refused:
        engine.tick(clock.now() + timedelta(days=2))
    assert refused.value.code == "validation_error"
    assert (
        "now:" in refused.value.message and "ahead of the engine's clock" in refused.value.message
    )
    assert event_count(engine) == before
    assert engine.order("o1").state == "awaiting_payment"


def test_a_naive_time_is_a_typed_refusal(engine: Escrow, clock: ManualClock) -> None:
    naive = clock.now().replace(tzinfo=None)
    with pytest.raises(ValidationError, match=r"now: time .* has no time zone"):
        engine.tick(naive)
    with pytest.raises(ValidationError, match=r"at: time .* has no time zone"):
        engine.trader("bob", at=naive)


def test_tick_at_a_past_time_never_stamps_before_what_was_recorded(
    engine: Escrow, clock: ManualClock
) -> None:
    engine.run("create_order", order_fields("o1"))
    clock.advance(timedelta(hours=1))
    engine.run("create_order", order_fields("o2"))
    engine.tick(START + timedelta(minutes=20))  # o1's window closed at 10:15, noticed late
    assert engine.order("o1").state == "cancelled"
    recorded = times(engine)
    assert recorded == sorted(recorded)


@pytest.fixture
def shared(store_url: str, clock: ManualClock) -> Iterator[Callable[[ManualClock], Escrow]]:
    if store_url == "memory:":
        pytest.skip("a memory store lives in one engine")
    opened: list[Escrow] = []

    def open_with(other: ManualClock) -> Escrow:
        opened.append(Escrow(store_url, clock=other, agents=AGENTS))
        return opened[-1]

    yield open_with
    for engine in opened:
        engine.close()


def test_a_process_whose_clock_is_behind_never_stamps_a_stream_back(
    shared: Callable[[ManualClock], Escrow], clock: ManualClock
) -> None:
    ahead = shared(clock)
    behind = shared(ManualClock(START - timedelta(hours=1)))
    ahead.run("create_order", order_fields("o1"))
    behind.run("mark_paid", {"order": "o1", "by": "bob"})
    events = list(ahead.app.events.get(stream_id("order", "o1")))
    assert [e.timestamp for e in events] == [START, START]


class SteppingBack:
    """A system clock corrected backwards (NTP) between two commands."""

    def __init__(self, *moments: datetime) -> None:
        self.moments = list(moments)

    def now(self) -> datetime:
        return self.moments.pop(0) if len(self.moments) > 1 else self.moments[0]


def test_an_engine_whose_clock_steps_back_records_at_its_latest_time(store_url: str) -> None:
    clock = SteppingBack(START, START - timedelta(minutes=5))
    with Escrow(store_url, clock=clock) as engine:
        engine.run("create_order", order_fields("o1"))
        engine.run("create_order", order_fields("o2"))  # another stream, same engine
        assert times(engine) == [START, START]


def test_verify_names_a_step_back_in_a_stream_and_in_the_log(clock: ManualClock) -> None:
    with Escrow("memory:", clock=clock, agents=AGENTS) as engine:
        paid_order(engine, "o1")
        clock.advance(timedelta(hours=1))
        engine.run("create_order", order_fields("o2"))
        with History(engine.app) as history:
            assert verify(history).clean
        order = engine.app.repository.get(stream_id("order", "o1"), projector_func=project)
        back = START - timedelta(minutes=2)  # written as if by a clock run two minutes slow
        order._chain(Order.Released, actor="alice", rule="O5", at=back, state="completed")
        engine.app.save(order)
        with History(engine.app) as history:
            messages = [f.message for f in verify(history).findings]
    assert messages == [
        "recorded at 2026-03-01T09:58:00+00:00, 0:02:00 before the event before it in its stream",
        "recorded at 2026-03-01T09:58:00+00:00, 1:02:00 before an event committed earlier in the log",
    ]
