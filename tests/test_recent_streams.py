"""An engine decides a command on the streams it wrote last without reading them back
(commands/recent.py). Another engine, as another process would, moves those streams in
between: every decision must still be the one a fresh read gives, and a refusal must store
nothing."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from commands.api import Escrow
from tests.helpers import assert_order, do, event_count, order_fields, paid_order, refused


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
    do(first, "create_order", **order_fields("o1"))  # `first` keeps alice: free to trade
    do(second, "apply_sanction", trader="alice", by="dave", kind="permanent_suspension")
    refused(first, "trader_suspended", "create_order", **order_fields("o2"))


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
