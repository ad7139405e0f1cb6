"""One event as every consumer sees it (docs/events.md): the relay to NATS, the
HTTP feed, the audit export and the Python handlers all build it here, so a wallet service
reading any of them sees the same fields, the same decimals and the same `movement`.

`movement` cannot be read off one event: a `completed` or `cancelled` order event moved escrow
only the first time the order got there, and the asset, amount and parties are in the order's
`Created` event. `EventJson` remembers those facts for the orders it has seen and reads the
order's stream for the others, so a page that starts anywhere in the log is still exact.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from typing import Any
from uuid import UUID

from escrow.commands.audit.history import History, kind_of, plain, stamp
from escrow.log import PAGE, Row
from escrow.order import Order
from escrow.vocabulary import OrderState

# What the envelope carries itself; every other stored field is the event's own `data`.
ENVELOPE = frozenset({"timestamp", "actor", "rule", "chain", "originator_topic", "class_version"})
# Order state reached first -> (what escrow did, the party who receives the crypto).
SETTLES = {
    OrderState.COMPLETED: ("released", "buyer"),
    OrderState.CANCELLED: ("returned", "seller"),
}
ORDER = Order.KIND
HELD = 65_536  # streams whose facts are remembered; past that they are read again


def event_json(
    position: int,
    stream: str,
    ref: str,
    version: int,
    topic: str,
    fields: Mapping[str, Any],
    movement: Mapping[str, Any] | None,
) -> dict[str, Any]:
    """THE JSON of one event, from its decoded stored fields (the only place it is built)."""
    return {
        "position": position,
        "stream": stream,
        "kind": kind_of(topic),
        "ref": ref,
        "version": version,
        "type": topic,
        "at": stamp(fields["timestamp"]),
        "actor": fields.get("actor"),
        "rule": fields.get("rule"),
        "data": {k: plain(v) for k, v in fields.items() if k not in ENVELOPE},
        "chain": fields.get("chain"),
        "movement": None if movement is None else plain(dict(movement)),
    }


def is_event(topic: str) -> bool:
    """Command receipts are the engine's idempotency bookkeeping, not facts of an order,
    appeal or trader: they are in the log but never in the feed."""
    return kind_of(topic) != "command"


class _Order:
    """What `movement` needs of one order: from its `Created`, and the first version at
    which it was completed or cancelled (None: not up to `known`)."""

    __slots__ = ("amount", "asset", "buyer", "known", "seller", "settled")

    def __init__(self, created: Mapping[str, Any]) -> None:
        self.asset: str = created["asset"]
        self.amount: Decimal = created["amount"]
        self.seller: str = created["seller"]
        self.buyer: str = created["buyer"]
        self.known = 1  # versions seen without a gap
        self.settled: int | None = None

    def see(self, version: int, state: str | None) -> None:
        if self.settled is None and state in SETTLES:
            self.settled = version
        self.known = max(self.known, version)


class EventJson:
    """Rows of the log (or decoded events) to contract JSON, remembering each stream's ref
    and each order's escrow facts across calls; events must come in each stream's version
    order, which the log's order and an order's timeline both keep."""

    def __init__(self, history: History) -> None:
        self.history = history
        self._refs: dict[str, str] = {}
        self._orders: dict[str, _Order] = {}

    def row(self, row: Row) -> dict[str, Any] | None:
        """The JSON of one row of the log; None for a command receipt."""
        position, stream, version, topic, state = row
        if not is_event(topic):
            return None
        return self.event(position, stream, version, topic, self.history.decode(state))

    def event(
        self, position: int, stream: str, version: int, topic: str, fields: Mapping[str, Any]
    ) -> dict[str, Any]:
        ref = fields.get("ref") if version == 1 else None
        if isinstance(ref, str):
            self._hold(self._refs, stream, ref)
        else:
            ref = self._refs.get(stream) or self._read_ref(stream)
        movement = None
        if kind_of(topic) == ORDER:
            movement = self._movement(stream, version, fields)
        return event_json(position, stream, ref, version, topic, fields, movement)

    def _movement(
        self, stream: str, version: int, fields: Mapping[str, Any]
    ) -> dict[str, Any] | None:
        state = fields.get("state")
        if version == 1:
            self._hold(self._orders, stream, _Order(fields))
            return None
        order = self._orders.get(stream)
        if order is None or (order.settled is None and order.known < version - 1):
            order = self._read_order(stream)
        order.see(version, state)
        if order.settled != version:
            return None
        escrow, party = SETTLES[OrderState(str(state))]
        return {
            "escrow": escrow,
            "asset": order.asset,
            "amount": order.amount,
            "to": order.buyer if party == "buyer" else order.seller,
        }

    def _read_order(self, stream: str) -> _Order:
        """An order first met past its `Created`: its facts from its own stream."""
        rows = self.history.stream_rows(UUID(stream))
        order = _Order(self.history.decode(rows[0][3]))
        for _, version, _, state in rows[1:]:
            order.see(version, self.history.decode(state).get("state"))
        self._hold(self._orders, stream, order)
        return order

    def _read_ref(self, stream: str) -> str:
        rows = self.history.stream_rows(UUID(stream))
        ref = str(self.history.decode(rows[0][3]).get("ref", "")) if rows else ""
        self._hold(self._refs, stream, ref)
        return ref

    @staticmethod
    def _hold(held: dict[str, Any], stream: str, value: Any) -> None:
        if len(held) >= HELD and stream not in held:
            held.clear()  # a long-running follower: the streams in flight are read again
        held[stream] = value


class EventFeed:
    """The log as pages of contract JSON: what the relay publishes and `GET /v1/events`
    answers. A page never steps over a position that may still be committed (a PostgreSQL
    writer in flight), so `page(after=last position seen)` never skips an event."""

    def __init__(self, history: History) -> None:
        self.history = history
        self.json = EventJson(history)

    def head(self) -> int:
        """The log's last position (a receipt's, possibly: positions count every row)."""
        return int(self.history.recorder.max_notification_id() or 0)

    def page(self, after: int, limit: int = PAGE) -> list[dict[str, Any]]:
        """Up to `limit` events with position > `after`, in log order."""
        return self.read(after, limit)[0]

    def read(self, after: int, limit: int = PAGE) -> tuple[list[dict[str, Any]], int]:
        """(`page(after, limit)`, the position read up to): past the events returned, the
        receipts read after the last of them, so a follower does not read those again."""
        events: list[dict[str, Any]] = []
        while len(events) < limit:
            rows = self.history.following(after, limit - len(events))
            for row in rows:
                made = self.json.row(row)
                if made is not None:
                    events.append(made)
            if not rows:
                break
            after = rows[-1][0]
        return events, after
