"""The escrow ledger: per asset, what is in escrow, released to buyers and returned to sellers,
and one movement line per order event that moved crypto."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from escrow.order import Order
from escrow.vocabulary import OrderState
from projections.base import ReadModel
from projections.deadlines import stamp
from projections.readstore import Cursor, ReadStore


class Ledger(ReadModel):
    name = "ledger"
    tables = ("escrow_ledger", "escrow_ledger_lines")

    def ddl(self, store: ReadStore) -> list[str]:
        d = store.decimal
        return [
            f"CREATE TABLE IF NOT EXISTS escrow_ledger (asset TEXT PRIMARY KEY, "
            f"in_escrow {d} NOT NULL, released {d} NOT NULL, returned {d} NOT NULL)",
            f"CREATE TABLE IF NOT EXISTS escrow_ledger_lines (stream TEXT NOT NULL, "
            f"version INTEGER NOT NULL, order_ref TEXT NOT NULL, asset TEXT NOT NULL, "
            f"movement TEXT NOT NULL, amount {d} NOT NULL, at TEXT NOT NULL, "
            f"PRIMARY KEY (stream, version))",
        ]

    def handle(self, cur: Cursor, event: Any) -> None:
        if isinstance(event, Order.Created):
            self._move(cur, event, event.ref, event.asset, "locked", event.amount)
        elif isinstance(event, Order.Moved) and event.state in (
            OrderState.COMPLETED,
            OrderState.CANCELLED,
        ):
            cur.execute(
                "SELECT order_ref, asset, amount FROM escrow_ledger_lines "
                "WHERE stream = ? AND movement = 'locked'",
                [str(event.originator_id)],
            )
            row = cur.fetchone()
            if row is None:
                return
            movement = "released" if event.state == OrderState.COMPLETED else "returned"
            cur.execute(
                "SELECT 1 FROM escrow_ledger_lines WHERE stream = ? AND movement = ?",
                [str(event.originator_id), movement],
            )
            if cur.fetchone() is None:  # terminal states are final: one settlement per order
                self._move(cur, event, row[0], row[1], movement, Decimal(str(row[2])))

    @staticmethod
    def _move(
        cur: Cursor, event: Any, ref: str, asset: str, movement: str, amount: Decimal
    ) -> None:
        cur.execute(
            "INSERT INTO escrow_ledger_lines (stream, version, order_ref, asset, movement, amount, at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?)",
            [
                str(event.originator_id),
                event.originator_version,
                ref,
                asset,
                movement,
                amount,
                stamp(event.timestamp),
            ],
        )
        cur.execute(
            "SELECT in_escrow, released, returned FROM escrow_ledger WHERE asset = ?", [asset]
        )
        row = cur.fetchone()
        in_escrow, released, returned = (
            (Decimal(0), Decimal(0), Decimal(0)) if row is None else (Decimal(str(v)) for v in row)
        )
        if movement == "locked":
            in_escrow += amount
        else:
            in_escrow -= amount
            if movement == "released":
                released += amount
            else:
                returned += amount
        cur.execute(
            "INSERT INTO escrow_ledger (asset, in_escrow, released, returned) VALUES (?, ?, ?, ?) "
            "ON CONFLICT (asset) DO UPDATE SET in_escrow = excluded.in_escrow, "
            "released = excluded.released, returned = excluded.returned",
            [asset, in_escrow, released, returned],
        )
