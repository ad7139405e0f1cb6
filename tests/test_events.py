"""The JSON of one event (docs/events.md) for every event of a simulated store, on
memory, SQLite and PostgreSQL: the contract's fields and types, amounts as exact decimal
strings, a `movement` on exactly the events that settled an order, and pages that neither skip
nor repeat an event."""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterator
from datetime import datetime
from decimal import Decimal
from typing import Any

import pytest

from escrow.commands.api import Escrow
from escrow.commands.audit.history import History, plain
from escrow.commands.events import EventFeed
from escrow.commands.simulation.simulate import simulate
from escrow.order import Order
from tests.conftest import AGENTS
from tests.helpers import order_fields

FIELDS = {
    "position": int,
    "stream": str,
    "kind": str,
    "ref": str,
    "version": int,
    "type": str,
    "at": str,
    "actor": str,
    "rule": (str, type(None)),
    "data": dict,
    "chain": str,
    "movement": (dict, type(None)),
}
UTC_TIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$")
TOPIC = re.compile(r"^escrow:(Order|Appeal|Trader|Complaint)\.[A-Za-z]+\.v\d+$")
AMOUNT = re.compile(r"^-?\d+(\.\d+)?$")  # plain notation: never 1E-7


@pytest.fixture
def simulated(store_url: str, clock: Any) -> Iterator[Escrow]:
    engine = Escrow(store_url, clock=clock, agents=AGENTS)
    simulate(engine, 60, seed=5)
    # An amount Decimal prints in scientific notation, and a receipt (not an event).
    engine.run("create_order", {**order_fields("tiny", amount="0.0000001"), "command_id": "c1"})
    engine.run("mark_paid", {"order": "tiny", "by": "bob"})
    engine.run("release", {"order": "tiny", "by": "alice"})
    yield engine
    engine.close()


def every_event(engine: Escrow) -> list[dict[str, Any]]:
    return EventFeed(History(engine.app)).page(0, 1_000_000)


def test_every_event_has_the_contract_fields(simulated: Escrow) -> None:
    events = every_event(simulated)
    positions = [e["position"] for e in events]
    assert positions == sorted(set(positions)) and len(events) > 250
    kinds = set()
    for e in events:
        assert set(e) == set(FIELDS)
        for name, kind in FIELDS.items():
            assert isinstance(e[name], kind), (name, e)
        assert UTC_TIME.match(e["at"]) and TOPIC.match(e["type"]), e
        assert e["kind"] == e["type"].split(":")[1].split(".")[0].lower()
        assert e["ref"] and len(e["chain"]) == 64
        assert not {"timestamp", "chain", "actor", "rule", "originator_topic"} & set(e["data"])
        for key in ("amount", "price", "fiat_amount", "paid_amount"):
            if key in e["data"]:
                assert AMOUNT.match(e["data"][key]), e
        kinds.add(e["kind"])
    assert kinds == {"order", "appeal", "trader"}  # receipts are not events
    tiny = next(e for e in events if e["ref"] == "tiny")
    assert tiny["data"]["amount"] == "0.0000001"


def test_movement_is_on_exactly_the_events_that_settled_an_order(simulated: Escrow) -> None:
    events = every_event(simulated)
    moved: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for e in events:
        if e["movement"] is not None:
            assert e["kind"] == "order" and e["data"]["state"] in ("completed", "cancelled")
            moved[e["ref"]].append(e)
    orders = {e["ref"] for e in events if e["type"] == Order.Created.TOPIC}
    settled = 0
    for ref in orders:
        order = simulated.order(ref)
        if order.state not in ("completed", "cancelled"):
            assert ref not in moved
            continue
        settled += 1
        (event,) = moved[ref]  # once, even when a later event repeats the state
        first = next(e for e in events if e["ref"] == ref and e["data"].get("state") == order.state)
        assert event is first
        released = order.state == "completed"
        assert event["movement"] == {
            "escrow": "released" if released else "returned",
            "asset": order.asset,
            "amount": format(order.amount, "f"),
            "to": order.buyer if released else order.seller,
        }
    assert settled > 20 and set(moved) <= orders
    assert moved["tiny"][0]["movement"]["amount"] == "0.0000001"


@pytest.mark.parametrize("size", [1, 7, 100])
def test_pages_neither_skip_nor_repeat(simulated: Escrow, size: int) -> None:
    whole = every_event(simulated)
    feed = EventFeed(History(simulated.app))  # a fresh reader: what it knows comes from pages
    got: list[dict[str, Any]] = []
    after = 0
    while page := feed.page(after, size):
        assert len(page) <= size
        got += page
        after = page[-1]["position"]
    assert got == whole
    assert feed.head() >= whole[-1]["position"]


def test_a_page_that_starts_anywhere_is_the_same_json(simulated: Escrow) -> None:
    whole = every_event(simulated)
    for start in (whole[len(whole) // 3], whole[-5]):
        feed = EventFeed(History(simulated.app))
        assert (
            feed.page(start["position"] - 1, 40)
            == [e for e in whole if e["position"] >= start["position"]][:40]
        )


def test_json_values_are_exact() -> None:
    assert plain(Decimal("1E-7")) == "0.0000001"
    assert plain(Decimal("1.50")) == "1.50"
    assert plain(datetime.fromisoformat("2026-03-01T12:00:00+02:00")) == "2026-03-01T10:00:00Z"
