"""The appeal queue: the open appeals customer service works through, oldest first.

One row per appeal still open; resolving or cancelling an appeal deletes its row. Each row says
what the appeal waits on now and from whom, and the deadline that will move it if nobody acts:

| state                  | waits_on            | waits_for | due_at                     |
|------------------------|---------------------|-----------|----------------------------|
| open                   | review              | agent     |                            |
| under_review           | decision            | agent     |                            |
| awaiting_refund        | refund              | seller    |                            |
|   (refund reported)    | refund_confirmation | agent     |                            |
| awaiting_payment_proof | payment_proof       | buyer     | proof deadline (C1, R5)    |
| awaiting_top_up        | top_up              | buyer     |                            |
| awaiting_freeze_proof  | freeze_proof        | seller    | end of freeze window (C4)  |

Beside them, in `escrow_complaint_queue`, the formal complaints still undecided (E1–E6): one
row per complaint filed or under review, deleted when it is decided or withdrawn.

| state        | waits_on | waits_for  | due_at                              |
|--------------|----------|------------|-------------------------------------|
| filed        | review   | supervisor | response deadline (E5)              |
| under_review | decision | supervisor | response deadline (E5)              |

A complaint is `overdue` once the system recorded it so (E5), or, between two ticks, once the
query time reached its response deadline.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from pydantic import BaseModel, ConfigDict

from escrow.appeal import Appeal
from escrow.complaint import Complaint
from escrow.projections.base import Item, ReadModel
from escrow.projections.readstore import Cursor, ReadStore
from escrow.projections.rows import Rows, stamp, unstamp
from escrow.vocabulary import (
    APPEAL_TERMINAL,
    COMPLAINT_TERMINAL,
    AppealState,
    ComplaintState,
    RefundState,
)

COLUMNS = (
    "stream",
    "ref",
    "order_ref",
    "reason",
    "side",
    "opener",
    "buyer",
    "seller",
    "state",
    "agent",
    "waits_on",
    "waits_for",
    "due_at",
    "refund_state",
    "evidence",
    "opened_at",
    "last_event_at",
    "version",
)

COMPLAINT_COLUMNS = (
    "stream",
    "ref",
    "appeal_ref",
    "order_ref",
    "complainant",
    "state",
    "supervisor",
    "waits_on",
    "waits_for",
    "due_at",
    "overdue",
    "evidence",
    "filed_at",
    "last_event_at",
    "version",
)
COMPLAINT_WAITS: dict[str, tuple[str, str]] = {
    ComplaintState.FILED: ("review", "supervisor"),
    ComplaintState.UNDER_REVIEW: ("decision", "supervisor"),
}

WAITS: dict[str, tuple[str, str]] = {
    AppealState.OPEN: ("review", "agent"),
    AppealState.UNDER_REVIEW: ("decision", "agent"),
    AppealState.AWAITING_REFUND: ("refund", "seller"),
    AppealState.AWAITING_PAYMENT_PROOF: ("payment_proof", "buyer"),
    AppealState.AWAITING_TOP_UP: ("top_up", "buyer"),
    AppealState.AWAITING_FREEZE_PROOF: ("freeze_proof", "seller"),
}


def waiting(state: str, refund_state: str | None) -> tuple[str, str]:
    if state == AppealState.AWAITING_REFUND and refund_state == RefundState.REPORTED:
        return "refund_confirmation", "agent"
    return WAITS[state]


class AppealQueue(ReadModel):
    name = "appeal_queue"
    tables = ("escrow_appeal_queue", "escrow_complaint_queue")
    reads = (Appeal.Opened, Appeal.Event, Complaint.Filed, Complaint.Event)

    def ddl(self, store: ReadStore) -> list[str]:
        return [
            "CREATE TABLE IF NOT EXISTS escrow_appeal_queue (stream TEXT PRIMARY KEY, "
            "ref TEXT NOT NULL, order_ref TEXT NOT NULL, reason TEXT NOT NULL, "
            "side TEXT NOT NULL, opener TEXT NOT NULL, buyer TEXT NOT NULL, "
            "seller TEXT NOT NULL, state TEXT NOT NULL, agent TEXT, waits_on TEXT NOT NULL, "
            "waits_for TEXT NOT NULL, due_at TEXT, refund_state TEXT, "
            "evidence INTEGER NOT NULL, opened_at TEXT NOT NULL, last_event_at TEXT NOT NULL, "
            f"version INTEGER NOT NULL){store.clustered}",
            "CREATE TABLE IF NOT EXISTS escrow_complaint_queue (stream TEXT PRIMARY KEY, "
            "ref TEXT NOT NULL, appeal_ref TEXT NOT NULL, order_ref TEXT NOT NULL, "
            "complainant TEXT NOT NULL, state TEXT NOT NULL, supervisor TEXT, "
            "waits_on TEXT NOT NULL, waits_for TEXT NOT NULL, due_at TEXT NOT NULL, "
            "overdue INTEGER NOT NULL, evidence INTEGER NOT NULL, filed_at TEXT NOT NULL, "
            f"last_event_at TEXT NOT NULL, version INTEGER NOT NULL){store.clustered}",
        ]

    def indexes(self, store: ReadStore) -> list[str]:
        return [
            "CREATE UNIQUE INDEX IF NOT EXISTS escrow_appeal_queue_ref "
            "ON escrow_appeal_queue (ref)",
            "CREATE INDEX IF NOT EXISTS escrow_appeal_queue_opened "
            "ON escrow_appeal_queue (opened_at)",
        ]

    def __init__(self) -> None:
        self.rows = Rows(
            "escrow_appeal_queue", ("stream",), COLUMNS, integers=("evidence", "version")
        )
        self.complaints = Rows(
            "escrow_complaint_queue",
            ("stream",),
            COMPLAINT_COLUMNS,
            integers=("overdue", "evidence", "version"),
        )

    def held(self) -> tuple[Rows, ...]:
        return (self.rows, self.complaints)

    def project(self, cur: Cursor, items: Sequence[Item]) -> None:
        complaints = [(s, e) for s, e in items if isinstance(e, COMPLAINT_EVENTS)]
        if complaints:
            self._complaints(cur, complaints)
            items = [(s, e) for s, e in items if not isinstance(e, COMPLAINT_EVENTS)]
        rows = self.rows
        opened = Appeal.Opened
        new = {s for s, e in items if type(e) is opened}
        rows.load(cur, [s for s, _ in items if s not in new])
        for stream, event in items:
            if type(event) is opened:
                row: dict[str, Any] | None = _opened(stream, event)
            else:
                row = rows.get(stream)
                if row is None:  # closed (or never seen): nothing is queued
                    continue
                _change(row, event)
            assert row is not None
            if row["state"] in APPEAL_TERMINAL:
                rows.delete(stream)
                continue
            row["waits_on"], row["waits_for"] = waiting(row["state"], row["refund_state"])
            row["last_event_at"] = stamp(event.timestamp)
            row["version"] = event.originator_version
            if type(event) is opened:
                rows.insert(stream, row)
            else:
                rows.put(stream, row)

    def _complaints(self, cur: Cursor, items: Sequence[Item]) -> None:
        rows, filed = self.complaints, Complaint.Filed
        rows.load(cur, [s for s, e in items if type(e) is not filed])
        for stream, e in items:
            if type(e) is filed:
                row: dict[str, Any] | None = {
                    "stream": stream,
                    "ref": e.ref,
                    "appeal_ref": e.appeal,
                    "order_ref": e.order,
                    "complainant": e.complainant,
                    "state": e.state,
                    "supervisor": None,
                    "due_at": stamp(e.response_deadline),
                    "overdue": 0,
                    "evidence": 1,  # the statement
                    "filed_at": stamp(e.timestamp),
                }
            else:
                row = rows.get(stream)
                if row is None:
                    continue
                if isinstance(e, Complaint.Moved):
                    row["state"] = e.state
                if isinstance(e, Complaint.ReviewStarted):
                    row["supervisor"] = e.actor
                elif isinstance(e, Complaint.EvidenceAdded):
                    row["evidence"] += 1
                elif isinstance(e, Complaint.MarkedOverdue):
                    row["overdue"] = 1
            assert row is not None
            if row["state"] in COMPLAINT_TERMINAL:
                rows.delete(stream)
                continue
            row["waits_on"], row["waits_for"] = COMPLAINT_WAITS[row["state"]]
            row["last_event_at"] = stamp(e.timestamp)
            row["version"] = e.originator_version
            rows.put(stream, row)


COMPLAINT_EVENTS = (Complaint.Filed, Complaint.Event)


def _opened(stream: str, e: Any) -> dict[str, Any]:
    return {
        "stream": stream,
        "ref": e.ref,
        "order_ref": e.order,
        "reason": e.reason,
        "side": e.side,
        "opener": e.opener,
        "buyer": e.buyer,
        "seller": e.seller,
        "state": e.state,
        "agent": None,
        "due_at": stamp(e.freeze_deadline) if e.freeze_deadline is not None else None,
        "refund_state": None,
        "evidence": 0,
        "opened_at": stamp(e.timestamp),
    }


def _change(row: dict[str, Any], e: Any) -> None:
    """The appeal aggregate's own assignments, for the columns the queue shows."""
    if isinstance(e, Appeal.EvidenceAdded):
        row["evidence"] += 1
        return
    if not isinstance(e, Appeal.Moved):
        return
    row["state"] = e.state
    if isinstance(e, Appeal.ReviewStarted):
        row["agent"] = e.actor
    elif isinstance(e, Appeal.RefundRequested):
        row["refund_state"] = RefundState.REQUESTED.value
    elif isinstance(e, Appeal.RefundUpdated):
        row["refund_state"] = e.refund_state
    elif isinstance(e, Appeal.PaymentProofRequested):
        row["due_at"] = stamp(e.deadline)
    elif isinstance(
        e, Appeal.PaymentProofSubmitted | Appeal.FreezeProofSubmitted | Appeal.FreezeWindowClosed
    ):
        row["due_at"] = None


# --- queries ------------------------------------------------------------------------------


class QueueItem(BaseModel):
    model_config = ConfigDict(frozen=True)

    appeal: str
    order: str
    reason: str
    side: str
    opener: str
    buyer: str
    seller: str
    state: str
    agent: str | None
    waits_on: str
    waits_for: str
    due_at: datetime | None
    refund_state: str | None
    evidence: int
    opened_at: datetime
    last_event_at: datetime
    age: timedelta  # at the time of the query
    version: int


def query(
    store: ReadStore,
    at: datetime,
    *,
    reason: str | None = None,
    older_than: timedelta | None = None,
    agent: str | None = None,
    unassigned: bool = False,
    trader: str | None = None,
    waits_on: str | None = None,
    limit: int | None = None,
) -> list[QueueItem]:
    """Open appeals, oldest first; `older_than` keeps those opened at least that long before
    `at`; `trader` matches either party."""
    where: list[str] = []
    params: list[Any] = []
    if reason is not None:
        where.append("reason = ?")
        params.append(reason)
    if older_than is not None:
        where.append("opened_at <= ?")
        params.append(stamp(at - older_than))
    if agent is not None:
        where.append("agent = ?")
        params.append(agent)
    if unassigned:
        where.append("agent IS NULL")
    if trader is not None:
        where.append("(buyer = ? OR seller = ?)")
        params += [trader, trader]
    if waits_on is not None:
        where.append("waits_on = ?")
        params.append(waits_on)
    sql = f"SELECT {', '.join(COLUMNS)} FROM escrow_appeal_queue"
    if where:
        sql += " WHERE " + " AND ".join(where)
    sql += " ORDER BY opened_at, ref"
    if limit is not None:
        sql += " LIMIT ?"
        params.append(limit)
    items = []
    for values in store.query(sql, params):
        row = dict(zip(COLUMNS, values, strict=True))
        opened_at = unstamp(row["opened_at"])
        items.append(
            QueueItem(
                appeal=row["ref"],
                order=row["order_ref"],
                **{
                    k: row[k]
                    for k in COLUMNS
                    if k not in ("stream", "ref", "order_ref") and not k.endswith("_at")
                },
                due_at=unstamp(row["due_at"]) if row["due_at"] else None,
                opened_at=opened_at,
                last_event_at=unstamp(row["last_event_at"]),
                age=at - opened_at,
            )
        )
    return items


class ComplaintQueueItem(BaseModel):
    model_config = ConfigDict(frozen=True)

    complaint: str
    appeal: str
    order: str
    complainant: str
    state: str
    supervisor: str | None
    waits_on: str
    waits_for: str
    due_at: datetime
    overdue: bool
    evidence: int
    filed_at: datetime
    last_event_at: datetime
    age: timedelta  # at the time of the query
    version: int


def complaint_query(
    store: ReadStore, at: datetime, *, overdue: bool = False, limit: int | None = None
) -> list[ComplaintQueueItem]:
    """Undecided complaints, the earliest response deadline first; `overdue` keeps only
    those past it."""
    sql = f"SELECT {', '.join(COMPLAINT_COLUMNS)} FROM escrow_complaint_queue"
    params: list[Any] = []
    if overdue:
        sql += " WHERE overdue = 1 OR due_at <= ?"
        params.append(stamp(at))
    sql += " ORDER BY due_at, ref"
    if limit is not None:
        sql += " LIMIT ?"
        params.append(limit)
    items = []
    for values in store.query(sql, params):
        row = dict(zip(COMPLAINT_COLUMNS, values, strict=True))
        due, filed = unstamp(row["due_at"]), unstamp(row["filed_at"])
        items.append(
            ComplaintQueueItem(
                complaint=row["ref"],
                appeal=row["appeal_ref"],
                order=row["order_ref"],
                complainant=row["complainant"],
                state=row["state"],
                supervisor=row["supervisor"],
                waits_on=row["waits_on"],
                waits_for=row["waits_for"],
                due_at=due,
                overdue=bool(row["overdue"]) or at >= due,
                evidence=int(row["evidence"]),
                filed_at=filed,
                last_event_at=unstamp(row["last_event_at"]),
                age=at - filed,
                version=int(row["version"]),
            )
        )
    return items
