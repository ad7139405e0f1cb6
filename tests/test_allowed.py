"""`allowed` says exactly what `execute` would accept (issue 19).

The property: over random histories (tests.strategies), at each state reached, for a target
(an order, an appeal or a complaint), every actor and every command name of that target,
`name in allowed(actor, ...)` if and only if some representative command of that name from
that actor is accepted by a real `execute`, run on a throwaway copy of the store (a second
engine on a fresh memory store holding the same events) so the history under test never
moves. The representatives here are a superset of those `allowed` tries (larger amounts, a
compensation): a command accepted only with a larger amount would show up as a disagreement.
"""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from random import Random
from typing import Any

import pytest
from eventsourcing.persistence import StoredEvent
from hypothesis import HealthCheck, given, note, settings
from hypothesis import strategies as st

from escrow.clock import ManualClock
from escrow.commands.allowed import ON_APPEAL, ON_COMPLAINT, ON_ORDER
from escrow.commands.api import Escrow
from escrow.errors import EscrowError
from escrow.vocabulary import Reason
from tests.conftest import AGENTS, START, SUPERVISORS
from tests.helpers import event_count, order_fields, staffed
from tests.strategies import STRANGERS, Step, World, draw_step
from tests.test_properties import fresh_store, require_postgres

AMOUNTS = ("0.000000000000000001", "1", "100")
ORACLE: dict[str, list[dict[str, Any]]] = {
    "open_appeal": [{"reason": r.value} for r in Reason],
    "add_evidence": [{"description": "why"}],
    "request_refund": [{"amount": a} for a in AMOUNTS],
    "report_refund": [{"amount": a} for a in AMOUNTS],
    "confirm_top_up": [{}, *({"amount": a} for a in AMOUNTS)],
    "resolve_appeal": [{}, {"outcome": "release"}, {"outcome": "cancel"}],
    "confirm_reversal": [{"amount": a} for a in AMOUNTS],
    "record_recovery": [{"amount": a} for a in AMOUNTS],
    "file_complaint": [{"statement": "unfair"}],
    "decide_complaint": [
        {"decision": "upheld"},
        {"decision": "overturned"},
        {"decision": "overturned", "compensation": "1"},
    ],
    "add_complaint_evidence": [{"description": "more"}],
}


class Copies:
    """Throwaway engines holding the events of `engine` as they are now."""

    def __init__(self, engine: Escrow, clock: ManualClock) -> None:
        self.now = clock.now()
        self.events = [
            StoredEvent(n.originator_id, n.originator_version, n.topic, n.state)
            for n in engine.app.recorder.select_notifications(1, 10**7)
        ]
        self._engine: Escrow | None = None

    def engine(self) -> Escrow:
        if self._engine is None:
            self._engine = Escrow("memory:", clock=ManualClock(self.now))  # staff: in its events
            self._engine.app.recorder.insert_events(self.events)
        return self._engine

    def accepts(self, name: str, fields: dict[str, Any]) -> bool:
        try:
            self.engine().run(name, fields)
        except EscrowError:
            return False  # nothing recorded: this copy serves the next try
        assert self._engine is not None
        self._engine.close()
        self._engine = None  # it moved: the next try gets a fresh copy
        return True

    def close(self) -> None:
        if self._engine is not None:
            self._engine.close()


def oracle(copies: Copies, actor: str, names: tuple[str, ...], target: dict[str, str]) -> list[str]:
    """The names of which some representative is accepted by `execute` on a copy."""
    fresh = {"open_appeal": {"appeal": "probe-a"}, "file_complaint": {"complaint": "probe-k"}}
    return [
        name
        for name in names
        if any(
            copies.accepts(name, {**target, **fresh.get(name, {}), **variant, "by": actor})
            for variant in ORACLE.get(name, [{}])
        )
    ]


def targets(world: World) -> Iterator[tuple[dict[str, str], tuple[str, ...], set[str]]]:
    """Each order, appeal and complaint, with its command names and the people it concerns."""
    for ref, o in world.orders.items():
        yield {"order": ref}, ON_ORDER, {o.seller, o.buyer}
    for ref, a in world.appeals.items():
        yield {"appeal": ref}, ON_APPEAL, {a.opener, *_parties(world, a.order)}
    for ref, c in world.complaints.items():
        yield {"complaint": ref}, ON_COMPLAINT, {c.complainant, *_parties(world, c.order)}


def _parties(world: World, order: str) -> set[str]:
    o = world.orders.get(order)
    return set() if o is None else {o.seller, o.buyer}


def check(engine: Escrow, clock: ManualClock, world: World, r: Random) -> int:
    """Compare `allowed` with the oracle on a target of the world, drawn at random; the
    number of actors compared."""
    everything = list(targets(world))
    compared = 0
    for target, names, people in r.sample(everything, min(1, len(everything))):
        copies = Copies(engine, clock)
        try:
            for actor in sorted(people | set(AGENTS) | SUPERVISORS | {STRANGERS[0]}):
                listed = engine.allowed(actor, **target)
                truth = oracle(copies, actor, names, target)
                assert listed == truth, f"{actor} on {target}: allowed {listed}, execute {truth}"
                if "order" in target and "open_appeal" in listed:
                    assert engine.appeal_reasons(actor, target["order"])
                compared += 1
        finally:
            copies.close()
    return compared


def run(engine: Escrow, clock: ManualClock, world: World, step: Step) -> None:
    """One step of the history; the world learns the views of what it recorded."""
    if step.name == "wait":
        assert step.wait is not None
        clock.advance(step.wait)
        outcomes = engine.tick()
    elif step.name == "resend":
        sent = world.sent[step.fields["step"]]
        outcomes = [engine.run(sent.name, dict(sent.fields))]
    else:
        try:
            outcomes = [engine.run(step.name, dict(step.fields))]
        except EscrowError as refusal:
            note(f"  -> refused {refusal.code}")
            return
        if "command_id" in step.fields:
            world.sent.append(step)
    for outcome in outcomes:
        for rec in outcome.recorded:
            if rec.stream == "order":
                world.orders[rec.ref] = engine.order(rec.ref)
            elif rec.stream == "appeal":
                world.appeals[rec.ref] = engine.appeal(rec.ref)
            elif rec.stream == "complaint":
                world.complaints[rec.ref] = engine.complaint(rec.ref)
            elif rec.stream == "trader":
                world.traders[rec.ref] = engine.trader(rec.ref)


def play(url: str, data: st.DataObject, most: int) -> None:
    clock = ManualClock(START)
    world = World()
    r = Random(data.draw(st.integers(0, 2**32 - 1), label="targets"))
    with staffed(Escrow(url, clock=clock), AGENTS, SUPERVISORS) as engine:
        for _ in range(data.draw(st.integers(10, most), label="steps")):
            step = draw_step(data, world)
            note(str(step))
            run(engine, clock, world, step)
            check(engine, clock, world, r)


SETTINGS = settings(
    deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large]
)


@settings(SETTINGS, max_examples=20)
@given(data=st.data())
def test_allowed_is_what_execute_accepts_in_memory(data: st.DataObject) -> None:
    play("memory:", data, most=50)


@settings(SETTINGS, max_examples=4)
@given(data=st.data())
def test_allowed_is_what_execute_accepts_on_sqlite(data: st.DataObject) -> None:
    with fresh_store("sqlite") as url:
        play(url, data, most=30)


@settings(SETTINGS, max_examples=3)
@given(data=st.data())
def _postgres_examples(data: st.DataObject) -> None:
    with fresh_store("postgresql") as url:
        play(url, data, most=25)


def test_allowed_is_what_execute_accepts_on_postgresql() -> None:
    require_postgres()
    _postgres_examples()


# --- the finding, by hand --------------------------------------------------------------------


def test_after_a_resolved_appeal_only_the_open_reasons_remain(engine: Escrow) -> None:
    """A3: bob's seller_not_releasing issue is resolved; he may still appeal for his other
    reasons, and `appeal_reasons` says which."""
    engine.run("create_order", order_fields())
    engine.run("mark_paid", {"order": "o1", "by": "bob"})
    assert "seller_not_releasing" in engine.appeal_reasons("bob", "o1")
    engine.run(
        "open_appeal",
        {"order": "o1", "by": "bob", "reason": "seller_not_releasing", "appeal": "a1"},
    )
    engine.run("start_review", {"appeal": "a1", "by": "carol"})
    engine.run("resolve_appeal", {"appeal": "a1", "by": "carol", "outcome": "release"})
    stored = event_count(engine)
    reasons = engine.appeal_reasons("bob", "o1")
    assert "seller_not_releasing" not in reasons and reasons
    assert engine.allowed("bob", order="o1") == ["open_appeal"]
    assert engine.allowed("bob", appeal="a1") == ["file_complaint"]
    assert engine.allowed("carol", order="o1") == []
    assert engine.allowed("system", order="o1") == []
    assert event_count(engine) == stored  # asking recorded nothing


def test_a_refund_limit_reached_leaves_request_refund_out(engine: Escrow) -> None:
    """R3: once the refunds requested reach what the buyer paid, no amount is accepted."""
    engine.run("create_order", order_fields(amount="100", price="1"))
    engine.run("mark_paid", {"order": "o1", "by": "bob"})
    engine.run(
        "open_appeal",
        {"order": "o1", "by": "bob", "reason": "cancelled_after_payment", "appeal": "a1"},
    )
    engine.run("start_review", {"appeal": "a1", "by": "carol"})
    assert "request_refund" in engine.allowed("carol", appeal="a1")
    engine.run("request_refund", {"appeal": "a1", "by": "carol", "amount": "100"})
    assert "request_refund" not in engine.allowed("carol", appeal="a1")
    with pytest.raises(EscrowError):
        engine.run(
            "request_refund", {"appeal": "a1", "by": "carol", "amount": str(Decimal("1E-18"))}
        )
