"""The orders read model: one row per order, as the exchange's order list and CS see it.

Columns follow the order's events only (never another read model), so the table can be rebuilt
alone. Times are UTC stamps (`escrow.projections.rows.stamp`), amounts exact decimals.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any

from pydantic import BaseModel, ConfigDict

from escrow.order import Order
from escrow.projections.base import Handlers, Item, ReadModel
from escrow.projections.readstore import Cursor, ReadStore
from escrow.projections.rows import EXACT, Rows, stamp, unstamp
from escrow.vocabulary import ORDER_TERMINAL

COLUMNS = (
    "stream",
    "ref",
    "seller",
    "buyer",
    "asset",
    "amount",
    "fiat",
    "fiat_amount",
    "price",
    "payment_method",
    "state",
    "paid_amount",
    "cancel_reason",
    "open_appeal",
    "appeals",
    "created_at",
    "paid_at",
    "closed_at",
    "version",
)
DECIMALS = ("amount", "fiat_amount", "price", "paid_amount")
INTEGERS = ("appeals", "version")


class Orders(ReadModel):
    name = "orders"
    tables = ("escrow_orders",)
    reads = (Order.Created, Order.Event)

    def ddl(self, store: ReadStore) -> list[str]:
        d = store.decimal
        return [
            "CREATE TABLE IF NOT EXISTS escrow_orders (stream TEXT PRIMARY KEY, "
            "ref TEXT NOT NULL, seller TEXT NOT NULL, buyer TEXT NOT NULL, "
            f"asset TEXT NOT NULL, amount {d} NOT NULL, fiat TEXT NOT NULL, "
            f"fiat_amount {d} NOT NULL, price {d} NOT NULL, payment_method TEXT NOT NULL, "
            f"state TEXT NOT NULL, paid_amount {d}, cancel_reason TEXT, open_appeal TEXT, "
            "appeals INTEGER NOT NULL, created_at TEXT NOT NULL, paid_at TEXT, closed_at TEXT, "
            f"version INTEGER NOT NULL){store.clustered}",
        ]

    def indexes(self, store: ReadStore) -> list[str]:
        return [
            "CREATE INDEX IF NOT EXISTS escrow_orders_state ON escrow_orders (state, created_at)",
            "CREATE INDEX IF NOT EXISTS escrow_orders_seller ON escrow_orders (seller, created_at)",
            "CREATE INDEX IF NOT EXISTS escrow_orders_buyer ON escrow_orders (buyer, created_at)",
            "CREATE INDEX IF NOT EXISTS escrow_orders_created ON escrow_orders (created_at)",
        ]

    def __init__(self) -> None:
        self.rows = Rows("escrow_orders", ("stream",), COLUMNS, DECIMALS, INTEGERS)

    def held(self) -> tuple[Rows, ...]:
        return (self.rows,)

    def project(self, cur: Cursor, items: Sequence[Item]) -> None:
        rows = self.rows
        created = Order.Created
        new = {s for s, e in items if type(e) is created}
        rows.load(cur, [s for s, _ in items if s not in new])
        handlers = HANDLERS
        for stream, event in items:
            if type(event) is created:
                rows.insert(stream, _created(stream, event))
                continue
            row = rows.get(stream)
            if row is None:  # an order whose start this model never saw: nothing to change
                continue
            handler = handlers[type(event)]
            if handler is not None:
                handler(row, event)
            row["version"] = event.originator_version
            rows.put(stream, row)


def _created(stream: str, e: Any) -> dict[str, Any]:
    return {
        "stream": stream,
        "ref": e.ref,
        "seller": e.seller,
        "buyer": e.buyer,
        "asset": e.asset,
        "amount": e.amount,
        "fiat": e.fiat,
        "fiat_amount": e.fiat_amount,
        "price": e.price,
        "payment_method": e.payment_method,
        "state": e.state,
        "paid_amount": None,
        "cancel_reason": None,
        "open_appeal": None,
        "appeals": 0,
        "created_at": stamp(e.timestamp),
        "paid_at": None,
        "closed_at": None,
        "version": e.originator_version,
    }


# The same assignments as the aggregate's own `apply` methods.


def _moved(row: dict[str, Any], e: Any) -> None:
    row["state"] = e.state
    if e.state in ORDER_TERMINAL and row["closed_at"] is None:
        row["closed_at"] = stamp(e.timestamp)


def _paid(row: dict[str, Any], e: Any) -> None:
    _moved(row, e)
    row["paid_amount"] = e.paid_amount
    row["paid_at"] = stamp(e.timestamp)


def _cancelled(row: dict[str, Any], e: Any) -> None:
    _moved(row, e)
    row["cancel_reason"] = e.reason


def _appeal_opened(row: dict[str, Any], e: Any) -> None:
    _moved(row, e)
    row["open_appeal"] = e.appeal
    row["appeals"] += 1


def _appeal_closed(row: dict[str, Any], e: Any) -> None:
    _moved(row, e)
    row["open_appeal"] = None


def _topped_up(row: dict[str, Any], e: Any) -> None:
    row["paid_amount"] = EXACT.add(row["paid_amount"] or Decimal(0), e.amount)


HANDLERS: Handlers[Callable[[dict[str, Any], Any], None]] = Handlers(
    {
        Order.Moved: _moved,
        Order.MarkedPaid: _paid,
        Order.Cancelled: _cancelled,
        Order.AppealOpened: _appeal_opened,
        Order.AppealCancelled: _appeal_closed,
        Order.AppealResolved: _appeal_closed,
        Order.TopUpConfirmed: _topped_up,
    }
)


# --- queries ------------------------------------------------------------------------------


class OrderRow(BaseModel):
    model_config = ConfigDict(frozen=True)

    order: str
    state: str
    seller: str
    buyer: str
    asset: str
    amount: Decimal
    fiat: str
    fiat_amount: Decimal
    price: Decimal
    payment_method: str
    paid_amount: Decimal | None
    cancel_reason: str | None
    open_appeal: str | None
    appeals: int
    created_at: datetime
    paid_at: datetime | None
    closed_at: datetime | None
    version: int


def query(
    store: ReadStore,
    *,
    state: str | None = None,
    trader: str | None = None,
    asset: str | None = None,
    limit: int = 100,
    after: tuple[datetime, str] | None = None,
) -> list[OrderRow]:
    """Orders newest first, filtered by state, a party (either side) and asset; `after` (the
    `created_at` and `order` of the last row of a page) pages on by keyset, so a page stays
    exact and cheap however deep it is, and orders created meanwhile never shift it."""
    where: list[str] = []
    params: list[Any] = []
    if state is not None:
        where.append("state = ?")
        params.append(state)
    if trader is not None:
        where.append("(seller = ? OR buyer = ?)")
        params += [trader, trader]
    if asset is not None:
        where.append("asset = ?")
        params.append(asset)
    if after is not None:
        where.append("(created_at < ? OR (created_at = ? AND ref > ?))")
        params += [stamp(after[0]), stamp(after[0]), after[1]]
    sql = f"SELECT {', '.join(COLUMNS)} FROM escrow_orders"
    if where:
        sql += " WHERE " + " AND ".join(where)
    sql += " ORDER BY created_at DESC, ref LIMIT ?"
    rows = Rows("escrow_orders", ("stream",), COLUMNS, DECIMALS, INTEGERS)
    return [_view(rows.decode(values)) for values in store.query(sql, [*params, limit])]


def _view(row: dict[str, Any]) -> OrderRow:
    return OrderRow(
        order=row["ref"],
        **{k: row[k] for k in COLUMNS if k not in ("stream", "ref") and not k.endswith("_at")},
        created_at=unstamp(row["created_at"]),
        paid_at=unstamp(row["paid_at"]) if row["paid_at"] else None,
        closed_at=unstamp(row["closed_at"]) if row["closed_at"] else None,
    )
