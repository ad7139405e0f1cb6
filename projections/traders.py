"""Per-trader figures for CS and the exchange's trader profile.

Definitions (docs/projections.md repeats them):
- `orders`: orders the trader was a party to, either side. `completed` / `cancelled`: those that
  ended so, either side (a cancellation counts for both parties: the figure describes the
  trader's trades, not blame).
- 30-day completion rate: completed / (completed + cancelled) among the trader's orders whose
  closing time lies in the 30 days before the *query time* (the engine's clock, or `at`), so the
  figure ages with time even when no event arrives; none when no order closed in that window.
  The table keeps closing times, not the rate, so a rebuild gives the same answer.
- Time to pay: from the order's creation to the buyer's `mark_paid`, averaged over the orders
  the trader paid as buyer. Time to release: from `mark_paid` to the seller's own `release`,
  averaged over the orders the trader released as seller (releases decided by CS are not the
  seller's speed and are left out).
- Appeals: `opened` counts appeals the trader opened. An appeal resolved with `release` is won
  by the order's buyer and lost by its seller; with `cancel`, won by the seller and lost by the
  buyer, whoever opened it. No outcome (verbal abuse, an order already closed) and cancelled
  (withdrawn) appeals are neither won nor lost.
- Sanctions: those not lifted nor expired at the query time, with their expiry (none = until
  lifted).
- After the trade: `reversals` counts payment reversals CS confirmed against the trader as
  buyer (K1); `complaints_filed` the formal complaints the trader filed (E1) and
  `complaints_won` those overturned (E4). Kept in a table of their own
  (`escrow_trader_after_trade`), so stores from before need no migration.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any

from pydantic import BaseModel, ConfigDict

from escrow.appeal import Appeal
from escrow.complaint import Complaint
from escrow.order import Order
from escrow.projections.base import Handlers, Item, ReadModel
from escrow.projections.readstore import Cursor, ReadStore
from escrow.projections.rows import Rows, stamp, unstamp
from escrow.recording import stream_id
from escrow.trader import Trader
from escrow.views import SanctionView
from escrow.vocabulary import ORDER_TERMINAL, Decision, OrderState, Outcome

WINDOW = timedelta(days=30)
MICRO = timedelta(microseconds=1)

TRADER_COLUMNS = (
    "trader",
    "stream",
    "orders",
    "completed",
    "cancelled",
    "pay_count",
    "pay_micros",
    "release_count",
    "release_micros",
    "appeals_opened",
    "appeals_won",
    "appeals_lost",
)
COUNTERS = TRADER_COLUMNS[2:]
ORDER_COLUMNS = ("stream", "seller", "buyer", "created_at", "paid_at", "closed_at", "outcome")
SANCTION_COLUMNS = ("stream", "sanction", "kind", "severity", "appeal", "since", "expires_at")
AFTER_COLUMNS = ("trader", "reversals", "complaints_filed", "complaints_won")
AFTER_COUNTERS = AFTER_COLUMNS[1:]


class Traders(ReadModel):
    name = "traders"
    tables = (
        "escrow_traders",
        "escrow_trader_orders",
        "escrow_trader_sanctions",
        "escrow_trader_after_trade",
    )
    reads = (
        Order.Created,
        Order.Moved,
        Appeal.Opened,
        Appeal.ReversalConfirmed,
        Trader.Registered,
        Trader.Event,
        Complaint.Filed,
        Complaint.Decided,
    )

    def ddl(self, store: ReadStore) -> list[str]:
        counters = ", ".join(f"{c} BIGINT NOT NULL" for c in COUNTERS)
        return [
            "CREATE TABLE IF NOT EXISTS escrow_traders (trader TEXT PRIMARY KEY, "
            f"stream TEXT NOT NULL, {counters}){store.clustered}",
            "CREATE TABLE IF NOT EXISTS escrow_trader_orders (stream TEXT PRIMARY KEY, "
            "seller TEXT NOT NULL, buyer TEXT NOT NULL, created_at TEXT NOT NULL, "
            f"paid_at TEXT, closed_at TEXT, outcome TEXT){store.clustered}",
            "CREATE TABLE IF NOT EXISTS escrow_trader_sanctions (stream TEXT NOT NULL, "
            "sanction INTEGER NOT NULL, kind TEXT NOT NULL, severity TEXT, appeal TEXT, "
            f"since TEXT NOT NULL, expires_at TEXT, PRIMARY KEY (stream, sanction)){store.clustered}",
            "CREATE TABLE IF NOT EXISTS escrow_trader_after_trade (trader TEXT PRIMARY KEY, "
            + ", ".join(f"{c} BIGINT NOT NULL" for c in AFTER_COUNTERS)
            + f"){store.clustered}",
        ]

    def indexes(self, store: ReadStore) -> list[str]:
        return [
            "CREATE UNIQUE INDEX IF NOT EXISTS escrow_traders_stream ON escrow_traders (stream)",
            "CREATE INDEX IF NOT EXISTS escrow_trader_orders_seller "
            "ON escrow_trader_orders (seller, closed_at)",
            "CREATE INDEX IF NOT EXISTS escrow_trader_orders_buyer "
            "ON escrow_trader_orders (buyer, closed_at)",
        ]

    def __init__(self) -> None:
        self.batch = _Batch(
            Rows("escrow_trader_orders", ("stream",), ORDER_COLUMNS),
            Rows(
                "escrow_traders",
                ("trader",),
                TRADER_COLUMNS,
                integers=COUNTERS,
                summed=COUNTERS,
            ),
            Rows(
                "escrow_trader_sanctions",
                ("stream", "sanction"),
                SANCTION_COLUMNS,
                integers=("sanction",),
            ),
            Rows(
                "escrow_trader_after_trade",
                ("trader",),
                AFTER_COLUMNS,
                integers=AFTER_COUNTERS,
                summed=AFTER_COUNTERS,
            ),
        )

    def held(self) -> tuple[Rows, ...]:
        b = self.batch
        return (b.orders, b.traders, b.sanctions, b.after)

    def project(self, cur: Cursor, items: Sequence[Item]) -> None:
        batch = self.batch
        batch.load(cur, items)
        handlers = HANDLERS
        for stream, event in items:
            handler = handlers[type(event)]
            if handler is not None:
                handler(batch, stream, event)


class _Batch:
    def __init__(self, orders: Rows, traders: Rows, sanctions: Rows, after: Rows) -> None:
        self.orders, self.traders, self.sanctions, self.after = orders, traders, sanctions, after

    def load(self, cur: Cursor, items: Sequence[Item]) -> None:
        """The orders the events continue, then every trader the batch will count for."""
        created, opened, registered = Order.Created, Appeal.Opened, Trader.Registered
        new = {s for s, e in items if type(e) is created}
        self.orders.load(cur, [s for s, e in items if s not in new and isinstance(e, Order.Moved)])
        names: set[str] = set()
        for stream, e in items:
            kind = type(e)
            if kind is created:
                names.add(e.seller)
                names.add(e.buyer)
            elif kind is opened:
                names.add(e.opener)
            elif kind is registered:
                names.add(e.ref)
            elif stream not in new and (row := self.orders.get(stream)) is not None:
                names.add(row["seller"])
                names.add(row["buyer"])
        self.traders.load(cur, names)
        after = [name for _, e in items if (name := _after_trade_party(e)) is not None]
        if after:
            self.after.load(cur, after)

    def after_trade(self, name: str) -> dict[str, Any]:
        row = self.after.get(name) or {"trader": name, **dict.fromkeys(AFTER_COUNTERS, 0)}
        self.after.put(name, row)
        return row

    def trader(self, name: str) -> dict[str, Any]:
        row = self.traders.get(name)
        if row is None:
            row = {"trader": name, "stream": str(stream_id(Trader.KIND, name))}
            row.update(dict.fromkeys(COUNTERS, 0))
        self.traders.put(name, row)
        return row


def _order_created(b: _Batch, stream: str, e: Any) -> None:
    b.orders.insert(
        stream,
        {
            "stream": stream,
            "seller": e.seller,
            "buyer": e.buyer,
            "created_at": stamp(e.timestamp),
            "paid_at": None,
            "closed_at": None,
            "outcome": None,
        },
    )
    b.trader(e.seller)["orders"] += 1
    b.trader(e.buyer)["orders"] += 1


def _order_moved(b: _Batch, stream: str, e: Any) -> None:
    row = b.orders.get(stream)
    if row is None:
        return
    at = e.timestamp
    kind = type(e)
    if kind is Order.MarkedPaid:
        row["paid_at"] = stamp(at)
        buyer = b.trader(row["buyer"])
        buyer["pay_count"] += 1
        buyer["pay_micros"] += (at - unstamp(row["created_at"])) // MICRO
    elif kind is Order.Released and row["paid_at"] is not None:
        seller = b.trader(row["seller"])
        seller["release_count"] += 1
        seller["release_micros"] += (at - unstamp(row["paid_at"])) // MICRO
    elif kind is Order.AppealResolved and e.outcome != Outcome.NONE:
        won, lost = ("buyer", "seller") if e.outcome == Outcome.RELEASE else ("seller", "buyer")
        b.trader(row[won])["appeals_won"] += 1
        b.trader(row[lost])["appeals_lost"] += 1
    if e.state in ORDER_TERMINAL and row["closed_at"] is None:
        row["closed_at"] = stamp(at)
        row["outcome"] = e.state
        counter = "completed" if e.state == OrderState.COMPLETED else "cancelled"
        b.trader(row["seller"])[counter] += 1
        b.trader(row["buyer"])[counter] += 1
    b.orders.put(stream, row)


def _appeal_opened(b: _Batch, stream: str, e: Any) -> None:
    b.trader(e.opener)["appeals_opened"] += 1


def _registered(b: _Batch, stream: str, e: Any) -> None:
    b.trader(e.ref)


def _sanctioned(b: _Batch, stream: str, e: Any) -> None:
    b.sanctions.insert(
        (stream, e.sanction),
        {
            "stream": stream,
            "sanction": e.sanction,
            "kind": e.kind,
            "severity": e.severity,
            "appeal": e.appeal,
            "since": stamp(e.timestamp),
            "expires_at": stamp(e.expires_at) if e.expires_at is not None else None,
        },
    )


def _sanction_ended(b: _Batch, stream: str, e: Any) -> None:
    for sanction in e.sanctions:
        b.sanctions.delete((stream, sanction))


def _after_trade_party(e: Any) -> str | None:
    kind = type(e)
    if kind is Appeal.ReversalConfirmed:
        return str(e.buyer)
    if kind is Complaint.Filed or kind is Complaint.Decided:
        return str(e.complainant)
    return None


def _reversal(b: _Batch, stream: str, e: Any) -> None:
    b.after_trade(e.buyer)["reversals"] += 1


def _complaint_filed(b: _Batch, stream: str, e: Any) -> None:
    b.after_trade(e.complainant)["complaints_filed"] += 1


def _complaint_decided(b: _Batch, stream: str, e: Any) -> None:
    if e.decision == Decision.OVERTURNED:
        b.after_trade(e.complainant)["complaints_won"] += 1


HANDLERS: Handlers[Callable[[_Batch, str, Any], None]] = Handlers(
    {
        Order.Created: _order_created,
        Order.Moved: _order_moved,
        Appeal.Opened: _appeal_opened,
        Trader.Registered: _registered,
        Trader.Sanctioned: _sanctioned,
        Trader.SanctionEnded: _sanction_ended,
        Appeal.ReversalConfirmed: _reversal,
        Complaint.Filed: _complaint_filed,
        Complaint.Decided: _complaint_decided,
    }
)


# --- queries ------------------------------------------------------------------------------


class TraderStats(BaseModel):
    model_config = ConfigDict(frozen=True)

    trader: str
    at: datetime  # the query time the 30-day figures and sanctions are relative to
    orders: int
    completed: int
    cancelled: int
    completed_30d: int
    cancelled_30d: int
    completion_rate_30d: Decimal | None  # 4 decimal places, none without closed orders
    avg_pay_seconds: Decimal | None
    avg_release_seconds: Decimal | None
    appeals_opened: int
    appeals_won: int
    appeals_lost: int
    reversals: int = 0  # K1: payment reversals confirmed against the trader as buyer
    complaints_filed: int = 0  # E1
    complaints_won: int = 0  # E4: overturned
    sanctions: list[SanctionView]

    @property
    def can_trade(self) -> bool:
        return not self.sanctions


def _average(micros: int, count: int) -> Decimal | None:
    if not count:
        return None
    return (Decimal(micros) / count / 1_000_000).quantize(Decimal("0.001"), ROUND_HALF_EVEN)


CHUNK = 500  # names per query, far below either backend's parameter limit


def stats(store: ReadStore, names: Sequence[str], at: datetime) -> list[TraderStats]:
    """The figures of each named trader at `at`, in the order given: three queries per
    500 traders, in one snapshot."""
    counters: dict[str, dict[str, Any]] = {}
    after: dict[str, dict[str, int]] = {}
    recent: dict[tuple[str, str], int] = {}
    sanctions: dict[str, list[SanctionView]] = {}
    with store.reading() as cur:
        for i in range(0, len(names), CHUNK):
            chunk = list(names[i : i + CHUNK])
            marks = ",".join("?" * len(chunk))
            cur.execute(
                f"SELECT {', '.join(TRADER_COLUMNS)} FROM escrow_traders WHERE trader IN ({marks})",
                chunk,
            )
            for found in cur.fetchall():
                counters[found[0]] = dict(zip(TRADER_COLUMNS, found, strict=True))
            cur.execute(
                f"SELECT {', '.join(AFTER_COLUMNS)} FROM escrow_trader_after_trade "
                f"WHERE trader IN ({marks})",
                chunk,
            )
            for found in cur.fetchall():
                after[found[0]] = {
                    c: int(v) for c, v in zip(AFTER_COUNTERS, found[1:], strict=True)
                }
            window = [stamp(at - WINDOW), stamp(at)]
            cur.execute(  # an order counts for both its parties
                f"SELECT seller, outcome, COUNT(*) FROM escrow_trader_orders "
                f"WHERE seller IN ({marks}) AND closed_at > ? AND closed_at <= ? "
                f"GROUP BY seller, outcome UNION ALL "
                f"SELECT buyer, outcome, COUNT(*) FROM escrow_trader_orders "
                f"WHERE buyer IN ({marks}) AND closed_at > ? AND closed_at <= ? "
                f"GROUP BY buyer, outcome",
                [*chunk, *window, *chunk, *window],
            )
            for trader, outcome, n in cur.fetchall():
                recent[(trader, outcome)] = recent.get((trader, outcome), 0) + int(n)
            by_stream = {str(stream_id(Trader.KIND, name)): name for name in chunk}
            cur.execute(
                f"SELECT stream, kind, since, expires_at, appeal, severity "
                f"FROM escrow_trader_sanctions WHERE stream IN ({marks}) "
                f"AND (expires_at IS NULL OR expires_at > ?) ORDER BY stream, sanction",
                [*by_stream, stamp(at)],
            )
            for stream, kind, since, expires, appeal, severity in cur.fetchall():
                sanctions.setdefault(by_stream[stream], []).append(
                    SanctionView(
                        kind=kind,
                        since=unstamp(since),
                        expires_at=unstamp(expires) if expires else None,
                        appeal=appeal,
                        severity=severity,
                    )
                )
    return [
        _stats(
            name,
            at,
            counters.get(name) or dict.fromkeys(COUNTERS, 0),
            recent.get((name, OrderState.COMPLETED.value), 0),
            recent.get((name, OrderState.CANCELLED.value), 0),
            sanctions.get(name, []),
            after.get(name, {}),
        )
        for name in names
    ]


def _stats(
    name: str,
    at: datetime,
    row: dict[str, Any],
    done: int,
    undone: int,
    sanctions: list[SanctionView],
    after: dict[str, int],
) -> TraderStats:
    rate = None
    if done + undone:
        rate = (Decimal(done) / (done + undone)).quantize(Decimal("0.0001"), ROUND_HALF_EVEN)
    counts = {c: int(row[c]) for c in COUNTERS}
    return TraderStats(
        trader=name,
        at=at,
        orders=counts["orders"],
        completed=counts["completed"],
        cancelled=counts["cancelled"],
        completed_30d=done,
        cancelled_30d=undone,
        completion_rate_30d=rate,
        avg_pay_seconds=_average(counts["pay_micros"], counts["pay_count"]),
        avg_release_seconds=_average(counts["release_micros"], counts["release_count"]),
        appeals_opened=counts["appeals_opened"],
        appeals_won=counts["appeals_won"],
        appeals_lost=counts["appeals_lost"],
        **after,
        sanctions=sanctions,
    )


SORTS = {
    "name": "trader",
    "orders": "orders DESC, trader",
    "cancelled": "cancelled DESC, trader",
    "appeals": "appeals_opened DESC, trader",
    "lost": "appeals_lost DESC, trader",
}


def names(store: ReadStore, sort: str = "name", limit: int = 50) -> list[str]:
    """Trader names in the chosen order (see SORTS)."""
    rows = store.query(f"SELECT trader FROM escrow_traders ORDER BY {SORTS[sort]} LIMIT ?", [limit])
    return [str(r[0]) for r in rows]
