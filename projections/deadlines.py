"""The deadline read model: what falls due when (O3, C1, C4, S2, S3); `tick` reads it.

A row is a deadline still pending; the events that fire it or make it moot delete it. Firing is
decided by the aggregate itself, so a row read twice (two schedulers) still fires once.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from uuid import UUID

from escrow.appeal import Appeal
from escrow.order import Order
from escrow.trader import Trader
from projections.base import ReadModel
from projections.readstore import Cursor, ReadStore

PAYMENT_WINDOW = "payment_window"  # O3
PAYMENT_PROOF = "payment_proof"  # C1 / R5
FREEZE_WINDOW = "freeze_window"  # C4 / R7
SANCTION_EXPIRY = "sanction_expiry"  # S2 / S3


def stamp(moment: datetime) -> str:
    """A fixed-width UTC text that sorts like time on every backend."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class Deadlines(ReadModel):
    name = "deadlines"
    tables = ("escrow_deadlines",)

    def ddl(self, store: ReadStore) -> list[str]:
        return [
            "CREATE TABLE IF NOT EXISTS escrow_deadlines (kind TEXT NOT NULL, stream TEXT NOT NULL, "
            "item TEXT NOT NULL, due_at TEXT NOT NULL, ref TEXT NOT NULL, "
            "PRIMARY KEY (kind, stream, item))",
            "CREATE INDEX IF NOT EXISTS escrow_deadlines_due ON escrow_deadlines (due_at)",
        ]

    def handle(self, cur: Cursor, event: Any) -> None:
        stream = str(event.originator_id)
        if isinstance(event, Order.Created):
            self._add(cur, PAYMENT_WINDOW, stream, "", event.payment_deadline, event.ref)
        elif isinstance(event, Order.MarkedPaid | Order.Cancelled):
            self._drop(cur, PAYMENT_WINDOW, stream)
        elif isinstance(event, Appeal.Opened) and event.freeze_deadline is not None:
            self._add(cur, FREEZE_WINDOW, stream, "", event.freeze_deadline, event.ref)
        elif isinstance(event, Appeal.PaymentProofRequested):
            self._add(cur, PAYMENT_PROOF, stream, "", event.deadline, "")
        elif isinstance(event, Appeal.PaymentProofSubmitted | Appeal.Resolved | Appeal.Cancelled):
            self._drop(cur, PAYMENT_PROOF, stream)
            self._drop(cur, FREEZE_WINDOW, stream)
        elif isinstance(event, Appeal.FreezeProofSubmitted | Appeal.FreezeWindowClosed):
            self._drop(cur, FREEZE_WINDOW, stream)
        elif isinstance(event, Trader.Sanctioned) and event.expires_at is not None:
            self._add(cur, SANCTION_EXPIRY, stream, str(event.sanction), event.expires_at, "")
        elif isinstance(event, Trader.SanctionEnded):
            for sanction in event.sanctions:
                cur.execute(
                    "DELETE FROM escrow_deadlines WHERE kind = ? AND stream = ? AND item = ?",
                    [SANCTION_EXPIRY, stream, str(sanction)],
                )

    @staticmethod
    def _add(cur: Cursor, kind: str, stream: str, item: str, due: datetime, ref: str) -> None:
        cur.execute(
            "INSERT INTO escrow_deadlines (kind, stream, item, due_at, ref) VALUES (?, ?, ?, ?, ?) "
            "ON CONFLICT (kind, stream, item) DO UPDATE SET due_at = excluded.due_at",
            [kind, stream, item, stamp(due), ref],
        )

    @staticmethod
    def _drop(cur: Cursor, kind: str, stream: str) -> None:
        cur.execute("DELETE FROM escrow_deadlines WHERE kind = ? AND stream = ?", [kind, stream])


def due(rows: list[tuple[Any, ...]]) -> list[tuple[str, UUID]]:
    """(kind, stream) pairs from rows, once each, in due order."""
    seen: dict[tuple[str, UUID], None] = {}
    for kind, stream in rows:
        seen[(kind, UUID(stream))] = None
    return list(seen)
