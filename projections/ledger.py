"""The escrow ledger: per asset, what is in escrow, released to buyers and returned to sellers,
and one movement line per order event that moved crypto; and, in a table of their own, the
clawbacks of reversed payments (K4): what buyers still owe and what was recovered. A clawback
never moves escrow, so the escrow columns and lines never see one.

Sums use an exact context: amounts may carry 15 integer and 18 decimal digits, beyond the 28
significant digits of Python's default context, and a ledger never rounds.
"""

from __future__ import annotations

import operator
from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any

from pydantic import BaseModel, ConfigDict

from escrow.appeal import Appeal
from escrow.order import Order
from escrow.projections.base import Item, ReadModel
from escrow.projections.readstore import Cursor, ReadStore
from escrow.projections.rows import EXACT, HELD, Rows, as_decimal, stamp, unstamp
from escrow.recording import stream_id
from escrow.views import LedgerView
from escrow.vocabulary import OrderState

SETTLED = {OrderState.COMPLETED: "released", OrderState.CANCELLED: "returned"}
COLUMN = {"locked": 0, "released": 1, "returned": 2}  # a batch's sums per asset
ZERO = Decimal(0)

TOTALS = ("asset", "in_escrow", "released", "returned")
LINES = ("stream", "version", "order_ref", "asset", "movement", "amount", "at")
_line_key = operator.itemgetter(0, 1)
LINE_TYPES = ("text", "bigint", "text", "text", "text", "numeric", "text")
CLAWBACKS = ("asset", "clawback_owed", "clawback_recovered")
# K4: how each appeal event moves (owed, recovered), from its amount.
CLAWBACK_MOVES = {
    Appeal.ReversalConfirmed: lambda e: (e.amount, ZERO),
    Appeal.RecoveryRecorded: lambda e: (-e.amount, e.amount),
    Appeal.ClawbackWaived: lambda e: (-e.outstanding, ZERO),
}


class Ledger(ReadModel):
    name = "ledger"
    tables = ("escrow_ledger", "escrow_ledger_lines", "escrow_ledger_clawbacks")
    reads = (Order.Created, Order.Moved, *CLAWBACK_MOVES)

    def ddl(self, store: ReadStore) -> list[str]:
        d = store.decimal
        return [
            f"CREATE TABLE IF NOT EXISTS escrow_ledger (asset TEXT PRIMARY KEY, "
            f"in_escrow {d} NOT NULL, released {d} NOT NULL, returned {d} NOT NULL)",
            f"CREATE TABLE IF NOT EXISTS escrow_ledger_lines (stream TEXT NOT NULL, "
            f"version INTEGER NOT NULL, order_ref TEXT NOT NULL, asset TEXT NOT NULL, "
            f"movement TEXT NOT NULL, amount {d} NOT NULL, at TEXT NOT NULL, "
            f"PRIMARY KEY (stream, version)){store.clustered}",
            f"CREATE TABLE IF NOT EXISTS escrow_ledger_clawbacks (asset TEXT PRIMARY KEY, "
            f"clawback_owed {d} NOT NULL, clawback_recovered {d} NOT NULL)",
        ]

    def indexes(self, store: ReadStore) -> list[str]:
        return [
            "CREATE INDEX IF NOT EXISTS escrow_ledger_lines_asset "
            "ON escrow_ledger_lines (asset, at)",
        ]

    def __init__(self) -> None:
        self.totals = Rows(
            "escrow_ledger", ("asset",), TOTALS, decimals=TOTALS[1:], summed=TOTALS[1:]
        )
        self.clawbacks = Rows(
            "escrow_ledger_clawbacks",
            ("asset",),
            CLAWBACKS,
            decimals=CLAWBACKS[1:],
            summed=CLAWBACKS[1:],
        )
        # Per order stream: [ref, asset, amount, settled?], from its lines; held like rows.
        self.orders: dict[str, list[Any]] = {}

    def held(self) -> tuple[Rows, ...]:
        return (self.totals, self.clawbacks)

    def forget(self) -> None:
        super().forget()
        self.orders.clear()

    def project(self, cur: Cursor, items: Sequence[Item]) -> None:
        moves = [(CLAWBACK_MOVES[t], e) for _, e in items if (t := type(e)) in CLAWBACK_MOVES]
        if moves:
            self._clawbacks(cur, moves)
            items = [(s, e) for s, e in items if type(e) not in CLAWBACK_MOVES]
        created = Order.Created
        orders, totals = self.orders, self.totals
        new = {s for s, e in items if type(e) is created}  # their lines come from this batch
        self._load_orders(
            cur,
            [
                s
                for s, e in items
                if s not in new
                and s not in orders
                and type(e) is not created
                and e.state in SETTLED
            ],
        )
        lines: list[list[Any]] = []
        # Per asset, what the batch locked, released and returned: added to the totals once.
        moved: dict[str, list[Decimal]] = {}
        for stream, event in items:
            if type(event) is created:
                order = orders[stream] = [event.ref, event.asset, event.amount, False]
                movement = "locked"
            elif event.state in SETTLED:
                known = orders.get(stream)
                if known is None or known[3]:  # terminal is final: settled once
                    continue
                known[3] = True
                order, movement = known, SETTLED[event.state]
            else:
                continue
            ref, asset, amount, _ = order
            lines.append(
                [
                    stream,
                    event.originator_version,
                    ref,
                    asset,
                    movement,
                    amount,
                    stamp(event.timestamp),
                ]
            )
            sums = moved.get(asset)
            if sums is None:
                sums = moved[asset] = [ZERO, ZERO, ZERO]
            at = COLUMN[movement]
            sums[at] = EXACT.add(sums[at], amount)
        if lines:
            lines.sort(key=_line_key)
            cur.insert_rows("escrow_ledger_lines", LINES, LINE_TYPES, lines)
        totals.load(cur, list(moved))
        for asset, (locked, released, returned) in moved.items():
            row = totals.get(asset) or {
                "asset": asset,
                "in_escrow": ZERO,
                "released": ZERO,
                "returned": ZERO,
            }
            settled = EXACT.add(released, returned)
            row["in_escrow"] = EXACT.subtract(EXACT.add(row["in_escrow"], locked), settled)
            row["released"] = EXACT.add(row["released"], released)
            row["returned"] = EXACT.add(row["returned"], returned)
            totals.put(asset, row)
        if len(orders) > HELD:  # hold the orders in flight: those this batch moved
            recent = list(dict.fromkeys(s for s, _ in items))[-HELD:]
            self.orders = {s: orders[s] for s in recent if s in orders}

    def _clawbacks(self, cur: Cursor, moves: list[tuple[Any, Any]]) -> None:
        rows = self.clawbacks
        rows.load(cur, [e.asset for _, e in moves])
        for move, event in moves:
            owed, recovered = move(event)
            row = rows.get(event.asset) or dict.fromkeys(CLAWBACKS[1:], ZERO)
            row["asset"] = event.asset
            row["clawback_owed"] = EXACT.add(row["clawback_owed"], owed)
            row["clawback_recovered"] = EXACT.add(row["clawback_recovered"], recovered)
            rows.put(event.asset, row)

    def _load_orders(self, cur: Cursor, streams: list[str]) -> None:
        found = cur.select_in(
            "SELECT stream, order_ref, asset, amount, movement FROM escrow_ledger_lines",
            "stream",
            list(dict.fromkeys(streams)),
        )
        orders = self.orders
        for stream, ref, asset, amount, movement in found:
            if movement == "locked":
                orders[stream] = [ref, asset, as_decimal(amount), False]
        for stream, _, _, _, movement in found:
            if movement != "locked" and stream in orders:
                orders[stream][3] = True


# --- queries ------------------------------------------------------------------------------


class LedgerLine(BaseModel):
    model_config = ConfigDict(frozen=True)

    order: str
    asset: str
    movement: str  # locked | released | returned
    amount: Decimal
    at: datetime
    version: int  # the order event that moved it


LEDGER_SQL = (
    "SELECT l.asset, l.in_escrow, l.released, l.returned, c.clawback_owed, c.clawback_recovered "
    "FROM escrow_ledger l LEFT JOIN escrow_ledger_clawbacks c ON c.asset = l.asset"
)


def ledgers(store: ReadStore, asset: str | None = None) -> list[LedgerView]:
    """Every asset's escrow and clawback totals (or one asset's), by asset code."""
    where, params = (" WHERE l.asset = ?", [asset]) if asset is not None else ("", [])
    return [
        LedgerView(
            asset=code,
            in_escrow=as_decimal(in_escrow),
            released=as_decimal(released),
            returned=as_decimal(returned),
            clawback_owed=as_decimal(owed if owed is not None else 0),
            clawback_recovered=as_decimal(recovered if recovered is not None else 0),
        )
        for code, in_escrow, released, returned, owed, recovered in store.query(
            f"{LEDGER_SQL}{where} ORDER BY l.asset", params
        )
    ]


def ledger_lines(
    store: ReadStore, *, order: str | None = None, asset: str | None = None, limit: int = 100
) -> list[LedgerLine]:
    """Movement lines, newest first, for one order or one asset."""
    where: list[str] = []
    params: list[Any] = []
    if order is not None:  # an order's stream id is made from its ref: its lines are a key range
        where.append("stream = ?")
        params.append(str(stream_id(Order.KIND, order)))
    if asset is not None:
        where.append("asset = ?")
        params.append(asset)
    sql = "SELECT order_ref, asset, movement, amount, at, version FROM escrow_ledger_lines"
    if where:
        sql += " WHERE " + " AND ".join(where)
    sql += " ORDER BY at DESC, order_ref, version DESC LIMIT ?"
    return [
        LedgerLine(
            order=ref,
            asset=a,
            movement=movement,
            amount=as_decimal(amount),
            at=unstamp(at),
            version=version,
        )
        for ref, a, movement, amount, at, version in store.query(sql, [*params, limit])
    ]
