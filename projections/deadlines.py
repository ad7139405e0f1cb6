"""The deadline read model: what falls due when (O3, C1, C4, S2, S3, E5); `tick` reads it.

A row is a deadline still pending; the events that fire it or make it moot delete it. Firing is
decided by the aggregate itself, so a row read twice (two schedulers) still fires once.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any
from uuid import UUID

from escrow.appeal import Appeal
from escrow.complaint import Complaint
from escrow.order import Order
from escrow.projections.base import Handlers, Item, ReadModel
from escrow.projections.readstore import Cursor, ReadStore
from escrow.projections.rows import Rows, stamp
from escrow.trader import Trader

__all__ = [
    "COMPLAINT_RESPONSE",
    "FREEZE_WINDOW",
    "PAYMENT_PROOF",
    "PAYMENT_WINDOW",
    "SANCTION_EXPIRY",
    "stamp",
]

PAYMENT_WINDOW = "payment_window"  # O3
PAYMENT_PROOF = "payment_proof"  # C1 / R5
FREEZE_WINDOW = "freeze_window"  # C4 / R7
SANCTION_EXPIRY = "sanction_expiry"  # S2 / S3
COMPLAINT_RESPONSE = "complaint_response"  # E5

KINDS = (PAYMENT_WINDOW, PAYMENT_PROOF, FREEZE_WINDOW, SANCTION_EXPIRY, COMPLAINT_RESPONSE)
COLUMNS = ("kind", "stream", "item", "due_at", "ref")
Handler = Callable[[Rows, str, Any], None]


def _row(kind: str, stream: str, item: str, due: datetime, ref: str) -> dict[str, Any]:
    return {"kind": kind, "stream": stream, "item": item, "due_at": stamp(due), "ref": ref}


def _order_created(rows: Rows, stream: str, e: Any) -> None:
    key = (PAYMENT_WINDOW, stream, "")
    rows.insert(key, _row(*key, e.payment_deadline, e.ref))


def _paid_or_cancelled(rows: Rows, stream: str, e: Any) -> None:
    rows.delete((PAYMENT_WINDOW, stream, ""))


def _appeal_opened(rows: Rows, stream: str, e: Any) -> None:
    if e.freeze_deadline is not None:
        key = (FREEZE_WINDOW, stream, "")
        rows.insert(key, _row(*key, e.freeze_deadline, e.ref))


def _proof_requested(rows: Rows, stream: str, e: Any) -> None:
    rows.put((PAYMENT_PROOF, stream, ""), _row(PAYMENT_PROOF, stream, "", e.deadline, ""))


def _appeal_moved_on(rows: Rows, stream: str, e: Any) -> None:
    rows.delete((PAYMENT_PROOF, stream, ""))
    rows.delete((FREEZE_WINDOW, stream, ""))


def _freeze_over(rows: Rows, stream: str, e: Any) -> None:
    rows.delete((FREEZE_WINDOW, stream, ""))


def _sanctioned(rows: Rows, stream: str, e: Any) -> None:
    if e.expires_at is not None:
        key = (SANCTION_EXPIRY, stream, str(e.sanction))
        rows.insert(key, _row(*key, e.expires_at, ""))


def _sanction_ended(rows: Rows, stream: str, e: Any) -> None:
    for sanction in e.sanctions:
        rows.delete((SANCTION_EXPIRY, stream, str(sanction)))


def _complaint_filed(rows: Rows, stream: str, e: Any) -> None:
    key = (COMPLAINT_RESPONSE, stream, "")
    rows.insert(key, _row(*key, e.response_deadline, e.ref))


def _complaint_answered(rows: Rows, stream: str, e: Any) -> None:
    """Decided, withdrawn, or recorded overdue: the deadline has nothing left to fire."""
    rows.delete((COMPLAINT_RESPONSE, stream, ""))


HANDLERS: Handlers[Handler] = Handlers(
    {
        Order.Created: _order_created,
        Order.MarkedPaid: _paid_or_cancelled,
        Order.Cancelled: _paid_or_cancelled,
        Appeal.Opened: _appeal_opened,
        Appeal.PaymentProofRequested: _proof_requested,
        Appeal.PaymentProofSubmitted: _appeal_moved_on,
        Appeal.Resolved: _appeal_moved_on,
        Appeal.Cancelled: _appeal_moved_on,
        Appeal.FreezeProofSubmitted: _freeze_over,
        Appeal.FreezeWindowClosed: _freeze_over,
        Trader.Sanctioned: _sanctioned,
        Trader.SanctionEnded: _sanction_ended,
        Complaint.Filed: _complaint_filed,
        Complaint.Decided: _complaint_answered,
        Complaint.Withdrawn: _complaint_answered,
        Complaint.MarkedOverdue: _complaint_answered,
    }
)


class Deadlines(ReadModel):
    name = "deadlines"
    tables = ("escrow_deadlines",)
    reads = (
        Order.Created,
        Order.MarkedPaid,
        Order.Cancelled,
        Appeal.Opened,
        Appeal.PaymentProofRequested,
        Appeal.PaymentProofSubmitted,
        Appeal.Resolved,
        Appeal.Cancelled,
        Appeal.FreezeProofSubmitted,
        Appeal.FreezeWindowClosed,
        Trader.Sanctioned,
        Trader.SanctionEnded,
        Complaint.Filed,
        Complaint.Decided,
        Complaint.Withdrawn,
        Complaint.MarkedOverdue,
    )

    def ddl(self, store: ReadStore) -> list[str]:
        return [
            "CREATE TABLE IF NOT EXISTS escrow_deadlines (kind TEXT NOT NULL, stream TEXT NOT NULL, "
            "item TEXT NOT NULL, due_at TEXT NOT NULL, ref TEXT NOT NULL, "
            f"PRIMARY KEY (kind, stream, item)){store.clustered}",
        ]

    def indexes(self, store: ReadStore) -> list[str]:
        return ["CREATE INDEX IF NOT EXISTS escrow_deadlines_due ON escrow_deadlines (due_at)"]

    def __init__(self) -> None:
        self.rows = Rows("escrow_deadlines", ("kind", "stream", "item"), COLUMNS)

    def held(self) -> tuple[Rows, ...]:
        return (self.rows,)

    def project(self, cur: Cursor, items: Sequence[Item]) -> None:
        rows = self.rows
        handlers = HANDLERS
        for stream, event in items:
            handler = handlers[type(event)]
            if handler is not None:
                handler(rows, stream, event)


def due(store: ReadStore, now: datetime) -> list[tuple[str, UUID, str | None]]:
    """(kind, stream, ref) of every deadline due at `now`, once per stream, in due order.

    The ref names the order, appeal or trader for the system command. Payment-proof and
    sanction rows carry none (their events do not name the stream), so it comes from the
    appeal queue (an appeal awaiting proof is open) and the traders table, all caught up
    together; None only if those tables lack the stream."""
    rows = store.query(
        "SELECT d.kind, d.stream, COALESCE(NULLIF(d.ref, ''), q.ref, t.trader) "
        "FROM escrow_deadlines d "
        "LEFT JOIN escrow_appeal_queue q ON q.stream = d.stream "
        "LEFT JOIN escrow_traders t ON t.stream = d.stream "
        "WHERE d.due_at <= ? ORDER BY d.due_at, d.kind",
        [stamp(now)],
    )
    seen: dict[tuple[str, UUID], str | None] = {}
    for kind, stream, ref in rows:
        seen.setdefault((kind, UUID(stream)), ref)
    return [(kind, stream, ref) for (kind, stream), ref in seen.items()]


def due_counts(store: ReadStore, now: datetime) -> dict[str, int]:
    """How many deadlines of each kind are due at `now` and not fired yet (a metric: one
    grouped count, not the rows `due` reads)."""
    rows = store.query(
        "SELECT kind, COUNT(*) FROM escrow_deadlines WHERE due_at <= ? GROUP BY kind", [stamp(now)]
    )
    counts = dict.fromkeys(KINDS, 0)
    counts.update({kind: int(n) for kind, n in rows})
    return counts
