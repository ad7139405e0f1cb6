"""Small helpers shared by tests: run a command by name, count what the store holds."""

from __future__ import annotations

from typing import Any

import pytest

from commands.api import Escrow
from escrow.errors import EscrowError


def event_count(engine: Escrow) -> int:
    return int(engine.app.recorder.max_notification_id() or 0)


def refused(engine: Escrow, code: str, name: str, **fields: Any) -> EscrowError:
    """Run a command that must be refused with `code`, and check it stored nothing."""
    before = event_count(engine)
    with pytest.raises(EscrowError) as caught:
        engine.run(name, fields)
    assert caught.value.code == code, f"expected {code}, got {caught.value}"
    assert event_count(engine) == before, "a refused command stored events"
    return caught.value


def order_fields(order: str = "o1", **over: Any) -> dict[str, Any]:
    fields: dict[str, Any] = dict(
        order=order,
        seller="alice",
        buyer="bob",
        asset="USDT",
        amount="500",
        price="0.92",
        fiat="EUR",
        payment_method="bank_transfer",
    )
    fields.update(over)
    return fields


def paid_order(engine: Escrow, order: str = "o1", **over: Any) -> None:
    engine.run("create_order", order_fields(order, **over))
    engine.run("mark_paid", {"order": order, "by": over.get("buyer", "bob")})
