"""Small helpers shared by tests: run a command by name, count what the store holds."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from escrow.commands.api import Escrow
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


def paid_order(
    engine: Escrow, order: str = "o1", paid_amount: str | None = None, **over: Any
) -> None:
    """An order created and marked paid (with the fiat amount the buyer says was sent)."""
    engine.run("create_order", order_fields(order, **over))
    sent = {} if paid_amount is None else {"paid_amount": paid_amount}
    engine.run("mark_paid", {"order": order, "by": over.get("buyer", "bob"), **sent})


def appeal_in_review(
    engine: Escrow,
    reason: str = "seller_not_releasing",
    *,
    by: str = "bob",
    paid_amount: str | None = None,
    appeal: str = "a1",
    **order: Any,
) -> None:
    """o1 paid (optionally another amount sent), an appeal opened by `by`, under review."""
    paid_order(engine, "o1", paid_amount, **order)
    engine.run("open_appeal", {"order": "o1", "by": by, "reason": reason, "appeal": appeal})
    engine.run("start_review", {"appeal": appeal, "by": "carol"})


def do(engine: Escrow, name: str, **fields: Any) -> None:
    engine.run(name, fields)


def assert_order(
    engine: Escrow, state: str, escrow: str, open_appeal: str | None = None, ref: str = "o1"
) -> None:
    view = engine.order(ref)
    assert (view.state, view.open_appeal) == (state, open_appeal)
    zero = Decimal(0)
    moved = {
        "locked": (zero, zero),
        "released": (view.amount, zero),
        "returned": (zero, view.amount),
    }
    assert (view.escrow.released, view.escrow.returned) == moved[escrow]


def assert_appeal(
    engine: Escrow,
    state: str,
    outcome: str | None = None,
    refund_state: str | None = None,
    ref: str = "a1",
) -> None:
    view = engine.appeal(ref)
    assert (view.state, view.outcome, view.refund_state) == (state, outcome, refund_state)


def assert_ledger(engine: Escrow, in_escrow: str, released: str = "0", returned: str = "0") -> None:
    ledger = engine.ledger("USDT")
    assert (ledger.in_escrow, ledger.released, ledger.returned) == (
        Decimal(in_escrow),
        Decimal(released),
        Decimal(returned),
    )


def assert_free(engine: Escrow, *names: str) -> None:
    for name in names:
        trader = engine.trader(name)
        assert trader.can_trade and trader.kinds == set(), name


def assert_sanctioned(engine: Escrow, name: str, kinds: set[str]) -> None:
    trader = engine.trader(name)
    assert not trader.can_trade
    assert trader.kinds == kinds
