"""Reading history for compliance: any order, appeal or trader as it was at a version or a time,
the difference between two points, an order's timeline, and seals of the stream heads
(`verify`, the pass over a whole store, is in `commands/audit/verify.py`; export in
`commands/audit/export.py`).

Everything here only reads. `History.open` opens the store read-only (SQLite `mode=ro`,
PostgreSQL `default_transaction_read_only`), never runs a projection and never executes a
command. Stored events are checked from their stored JSON, decoded by the application's own
transcoder without building event objects: no upcaster ever runs on the way, so a later class
version cannot change what an old event is checked against.
"""

from __future__ import annotations

import hashlib
import json
import json.scanner
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import quote
from uuid import UUID

from eventsourcing.application import AggregateNotFoundError, Application
from eventsourcing.persistence import JSONTranscoder

from escrow.appeal import Appeal
from escrow.application import EscrowApplication, project
from escrow.complaint import Complaint
from escrow.errors import NotFound, ValidationError
from escrow.faults import store_faults
from escrow.log import EventLog
from escrow.money import plain_amount
from escrow.order import Order
from escrow.recording import EscrowAggregate, stream_id
from escrow.store import StoreConfig, parse_store_url
from escrow.trader import Trader
from escrow.views import AppealView, ComplaintView, OrderView, TraderView

KINDS: dict[str, type[EscrowAggregate]] = {
    "order": Order,
    "appeal": Appeal,
    "trader": Trader,
    "complaint": Complaint,
}

# --- small helpers --------------------------------------------------------------------------


def parse_moment(text: str) -> datetime:
    """An ISO 8601 time with its zone (`2026-03-01T10:15:00Z`); a bare time is refused,
    because an audit that silently picks a zone answers the wrong question."""
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ValidationError(f"not an ISO 8601 time: {text!r}") from None
    if moment.tzinfo is None:
        raise ValidationError(f"time {text!r} has no zone: write it like 2026-03-01T10:15:00Z")
    return moment


def event_name(topic: str) -> str:
    """`escrow:Order.Released.v1` → `Order.Released`."""
    name = topic.split(":", 1)[-1]
    head, _, tail = name.rpartition(".")
    return head if tail[:1] == "v" and tail[1:].isdigit() else name


def kind_of(topic: str) -> str:
    """The stream kind a topic belongs to: order, appeal, trader, complaint, command
    (receipts)."""
    name = topic.split(":", 1)[-1].split(".", 1)[0]
    return {"Receipt": "command"}.get(name, name.lower())


def plain(value: Any) -> Any:
    """JSON-ready: amounts as exact decimal strings, times in ISO 8601, ids as text."""
    if isinstance(value, Decimal):
        return plain_amount(value)  # 1E-18 written out: 0.000000000000000001
    if isinstance(value, UUID):
        return str(value)
    if isinstance(value, datetime):
        return stamp(value)
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    return value


def stamp(moment: datetime) -> str:
    """RFC 3339 in UTC, written with Z, as the API's views and the event feed write it (a naive
    time is taken as UTC: the engine's clocks never make one)."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def to_json(value: Any, indent: int | None = None) -> str:
    return json.dumps(plain(value), indent=indent, ensure_ascii=False)


# --- the history of one store ---------------------------------------------------------------


# The library's transcodings, from their stored form to the text the chain hashed.
_AS_TEXT: dict[str, Callable[[str], str]] = {
    "decimal_str": str,
    "datetime_iso": str,
    "uuid_hex": lambda text: str(UUID(text)),
}


_scan: Any = json.scanner.make_scanner(json.JSONDecoder())  # type: ignore[arg-type]


class History(EventLog):
    """Read access to a store's events: pages of the log, one stream, an aggregate at a version."""

    def __init__(
        self, app: Application[UUID], owned: bool = False, config: StoreConfig | None = None
    ):
        super().__init__(app.recorder)
        self.app = app
        self._owned = owned
        self.config = config  # the store it was opened on (None: an application handed in)
        mapper = app.mapper
        self._transcoder = mapper.transcoder
        self._cipher, self._compressor = mapper.cipher, mapper.compressor
        self._fast = (
            type(self._transcoder) is JSONTranscoder
            and set(self._transcoder.names) == set(_AS_TEXT)
            and not self._cipher
            and not self._compressor
        )
        self._wrapped: dict[str, tuple[str, ...]] = {}

    @classmethod
    def open(cls, url: str) -> History:
        """Open a store read-only: no table is created, nothing is written."""
        config = parse_store_url(url)
        env = {"CREATE_TABLE": "n"}
        if config.backend == "memory":
            raise ValidationError("a memory: store lives only inside its own process")
        if config.backend == "sqlite":
            path = Path(config.sqlite_path or "")
            env["SQLITE_DBNAME"] = f"file:{quote(str(path.resolve()))}?mode=ro"
        else:
            env.update(POSTGRES_POOL_SIZE="2", POSTGRES_MAX_OVERFLOW="0")
        app = EscrowApplication.open(config, create=False, env=env)
        if config.backend == "postgresql":
            # The recorder connects while it is built. Once the pool holds all its
            # connections (a fixed size: none can be on its way with the old settings),
            # every connection is replaced by one read-only at the server, keeping the
            # options the store URL gave.
            pool = app.recorder.datastore.pool  # type: ignore[attr-defined]
            with store_faults(config, opening=True):
                try:
                    pool.wait(timeout=config.connect_timeout)
                except BaseException:
                    app.close()
                    raise
            given = pool.kwargs.get("options")
            read_only = "-c default_transaction_read_only=on"
            pool.kwargs["options"] = f"{given} {read_only}" if given else read_only
            pool.drain()
        return cls(app, owned=True, config=config)

    def __enter__(self) -> History:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._owned:
            self.app.close()

    # --- decoding -------------------------------------------------------------------------

    def decode(self, state: bytes) -> dict[str, Any]:
        """The stored fields, by the application's transcoder; no event object, no upcast."""
        if self._cipher:
            state = self._cipher.decrypt(state)
        if self._compressor:
            state = self._compressor.decompress(state)
        decoded: dict[str, Any] = self._transcoder.decode(state)
        return decoded

    def hashed_fields(self, state: bytes, topic: str = "") -> dict[str, Any]:
        """The stored fields as the chain hashed them: amounts, times and ids as their text.

        With the library's JSON transcoder (and no cipher or compressor) the JSON is scanned
        once and each transcoded value is taken as the text it was stored as; the keys that
        hold one are remembered per topic. Any other case, or such a value nested below the
        top level, goes through `decode`. (The hot path of `verify`: keep it lean.)
        """
        if self._fast:
            try:
                text = state.decode()
                fields: dict[str, Any]
                fields, end = _scan(text, 0)
                expected = state.count(b'"_type_":')
                found = 0
                keys = self._wrapped.get(topic, ())
                for key in keys:
                    value = fields.get(key)
                    if value.__class__ is dict:
                        fields[key] = _AS_TEXT[value["_type_"]](value["_data_"])
                        found += 1
                if found != expected:  # a shape not seen yet for this topic
                    for key, value in fields.items():
                        if value.__class__ is dict and "_type_" in value:
                            fields[key] = _AS_TEXT[value["_type_"]](value["_data_"])
                            found += 1
                            keys = (*keys, key)
                    self._wrapped[topic] = keys
                if found == expected and end == len(text):
                    return fields
            except (ValueError, KeyError, TypeError, AttributeError):
                pass  # not plain JSON with top-level values only: the transcoder decides
        fields = self.decode(state)
        for key, value in fields.items():
            if isinstance(value, Decimal | datetime | UUID):
                fields[key] = value.isoformat() if isinstance(value, datetime) else str(value)
        return fields

    # --- one stream -----------------------------------------------------------------------

    def stream(self, key: UUID) -> list[tuple[int, str, dict[str, Any]]]:
        """(version, topic, decoded fields) of every event of one stream."""
        return [(v, t, self.decode(state)) for _nid, v, t, state in self.stream_rows(key)]

    def aggregate(self, kind: str, ref: str, version: int | None = None) -> Any:
        cls = KINDS[kind]
        try:
            return self.app.repository.get(
                stream_id(cls.KIND, ref), version=version, projector_func=project
            )
        except AggregateNotFoundError:
            raise NotFound(f"no {kind} {ref!r}") from None

    def ledger(self) -> tuple[int, dict[str, tuple[Decimal, Decimal, Decimal]]] | None:
        """The ledger read model's position and totals, when it lives in this database."""
        prefix = f'"{self.recorder.datastore.schema}".' if self.backend == "postgresql" else ""
        queries = (
            f"SELECT position FROM {prefix}escrow_tracking WHERE name = 'ledger'",
            f"SELECT asset, in_escrow, released, returned FROM {prefix}escrow_ledger",
        )
        try:
            if self.backend == "sqlite":
                with self.recorder.datastore.transaction(commit=False) as c:
                    c.execute(queries[0])
                    position = c.fetchone()
                    c.execute(queries[1])
                    rows = c.fetchall()
            elif self.backend == "postgresql":
                with self._pg_cursor() as cur:
                    cur.execute(queries[0])
                    position = cur.fetchone()
                    cur.execute(queries[1])
                    rows = cur.fetchall()
            else:
                return None
        except Exception:  # no ledger read model in this database: nothing to compare
            return None
        if position is None:
            return None
        totals = {r[0]: (Decimal(str(r[1])), Decimal(str(r[2])), Decimal(str(r[3]))) for r in rows}
        return int(position[0]), totals


# --- point in time --------------------------------------------------------------------------


@dataclass(frozen=True)
class Snapshot:
    kind: str
    ref: str
    version: int
    recorded_at: datetime  # when that version's event was recorded
    asked: datetime | None  # the time asked about, if a time was asked
    state: dict[str, Any]

    def as_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "ref": self.ref,
            "version": self.version,
            "recorded_at": stamp(self.recorded_at),
            "at": stamp(self.asked) if self.asked else None,
            "state": self.state,
        }


def version_at(history: History, kind: str, ref: str, at: datetime) -> int | None:
    """The last version recorded at or before `at`, scanning the stream's timestamps."""
    found: int | None = None
    for version, _topic, fields in history.stream(stream_id(KINDS[kind].KIND, ref)):
        if fields["timestamp"] > at:
            break
        found = version
    return found


def snapshot(
    history: History,
    kind: str,
    ref: str,
    *,
    at: datetime | None = None,
    version: int | None = None,
) -> Snapshot:
    """The order, appeal or trader as it was at a version or a time (default: now)."""
    if kind not in KINDS:
        raise ValidationError(f"not a stream kind: {kind!r} (order, appeal, trader, complaint)")
    if at is not None and version is not None:
        raise ValidationError("ask for a time or a version, not both")
    if at is not None:
        version = version_at(history, kind, ref, at)
        if version is None:
            history.aggregate(kind, ref)  # NotFound if it never existed
            raise NotFound(f"{kind} {ref} did not exist yet at {stamp(at)}")
    aggregate = history.aggregate(kind, ref, version)
    if version is not None and aggregate.version != version:
        raise NotFound(f"{kind} {ref} has no version {version} (last is {aggregate.version})")
    recorded_at: datetime = aggregate.modified_on
    return Snapshot(
        kind, ref, aggregate.version, recorded_at, at, describe(kind, aggregate, at or recorded_at)
    )


def describe(kind: str, aggregate: Any, at: datetime) -> dict[str, Any]:
    """The same views the API answers, as JSON-ready data; a trader also shows every sanction
    it ever had, ended or not, since an audit asks what happened, not only what is active."""
    if kind == "order":
        view: dict[str, Any] = OrderView.of(aggregate).model_dump()
    elif kind == "appeal":
        view = AppealView.of(aggregate).model_dump()
    elif kind == "complaint":
        view = ComplaintView.of(aggregate).model_dump()
    else:
        view = TraderView.of(aggregate.ref, aggregate, at).model_dump()
        view["history"] = aggregate.sanctions
    return dict(plain(view))


@dataclass(frozen=True)
class Change:
    field: str
    before: Any
    after: Any


def flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    """Nested views as dotted paths, so a diff names the field that changed."""
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for key, item in value.items():
            out.update(flatten(item, f"{prefix}.{key}" if prefix else key))
        return out
    if isinstance(value, list) and any(isinstance(v, dict | list) for v in value):
        out = {}
        for i, item in enumerate(value):
            out.update(flatten(item, f"{prefix}[{i}]"))
        return out or {prefix: []}
    return {prefix: value}


def diff(before: Snapshot, after: Snapshot) -> list[Change]:
    a, b = flatten(before.state), flatten(after.state)
    missing = object()
    return [
        Change(k, a.get(k), b.get(k))
        for k in sorted(a.keys() | b.keys())
        if a.get(k, missing) != b.get(k, missing)
    ]


# --- timeline and export --------------------------------------------------------------------


@dataclass(frozen=True)
class Entry:
    id: int  # the notification id: the order events were committed in
    at: datetime
    kind: str
    ref: str
    stream: str
    version: int
    event: str
    topic: str
    actor: str | None
    rule: str | None
    fields: dict[str, Any]
    chain: str | None = None

    @property
    def amounts(self) -> dict[str, Decimal]:
        """Money and prices the event carries (a policy fraction is no amount)."""
        return {
            k: v
            for k, v in self.fields.items()
            if isinstance(v, Decimal) and k != "price_deviation_limit"
        }

    @property
    def state(self) -> str | None:
        value = self.fields.get("state")
        return value if isinstance(value, str) else None

    def as_json(self) -> dict[str, Any]:
        return dict(
            plain(
                {
                    "id": self.id,
                    "at": self.at,
                    "kind": self.kind,
                    "ref": self.ref,
                    "stream": self.stream,
                    "version": self.version,
                    "event": self.event,
                    "topic": self.topic,
                    "actor": self.actor,
                    "rule": self.rule,
                    "amounts": self.amounts,
                    "fields": self.fields,
                }
            )
        )


FIXED = ("timestamp", "actor", "rule", "chain", "originator_topic")


def entry(
    nid: int,
    kind: str,
    ref: str,
    key: UUID | str,
    version: int,
    topic: str,
    f: dict[str, Any],
) -> Entry:
    return Entry(
        id=nid,
        at=f["timestamp"],
        kind=kind,
        ref=ref,
        stream=str(key),
        version=version,
        event=event_name(topic),
        topic=topic,
        actor=f.get("actor"),
        rule=f.get("rule"),
        fields={k: v for k, v in f.items() if k not in FIXED},
        chain=f.get("chain"),
    )


def _entries(history: History, kind: str, ref: str) -> list[Entry]:
    key = stream_id(kind, ref)
    return [
        entry(nid, kind, ref, key, v, t, history.decode(state))
        for nid, v, t, state in history.stream_rows(key)
    ]


def trader_timeline(history: History, name: str) -> list[Entry]:
    """Every event of a person's trader stream: sanctions, and appointments to customer
    service (`Trader.Appointed`, `Trader.Dismissed`)."""
    out = _entries(history, "trader", name)
    if not out:
        raise NotFound(f"no trader {name!r}")
    return out


def timeline(history: History, order: str) -> list[Entry]:
    """Every event of the order, of its appeals (clawbacks included), of the complaints about
    them, and of the sanctions they caused (the parties' trader events naming one of the
    appeals, and the expiry or lifting of those sanctions), in time order (and, within one
    time, the order they were committed in)."""
    out = _entries(history, "order", order)
    if not out:
        raise NotFound(f"no order {order!r}")
    appeals = [e.fields["appeal"] for e in out if e.topic == Order.AppealOpened.TOPIC]
    for ref in dict.fromkeys(appeals):
        out += _entries(history, "appeal", ref)
    complaints = [e.fields["complaint"] for e in out if e.topic == Appeal.ComplaintFiled.TOPIC]
    for ref in dict.fromkeys(complaints):
        out += _entries(history, "complaint", ref)
    wanted = set(appeals)
    created = out[0].fields
    for name in dict.fromkeys((created["seller"], created["buyer"])):
        caused: set[int] = set()
        for e in _entries(history, "trader", name):
            if e.fields.get("appeal") in wanted and "sanction" in e.fields:
                caused.add(e.fields["sanction"])
                out.append(e)
            elif caused & set(e.fields.get("sanctions") or ()):
                out.append(e)
    out.sort(key=lambda e: (e.at, e.id or 0))
    return out


# --- seals ----------------------------------------------------------------------------------

SEAL_FORMAT = "escrow-audit-seal/1"


def seal_digest(heads: Iterable[tuple[str, int, str]]) -> str:
    """One digest over every stream head (stream, version, chain), in stream order."""
    h = hashlib.sha256()
    for key, version, chain in sorted(heads):
        h.update(f"{key} {version} {chain}\n".encode())
    return h.hexdigest()


def seal(history: History, progress: Callable[[int], None] | None = None) -> dict[str, Any]:
    """Every stream's head (id, kind, ref, last version, its chain digest) and one digest
    over all of them: kept outside the database, it shows later whether sealed history was
    rewritten, even consistently (chains recomputed) or by cutting off the last events."""
    heads: dict[str, list[Any]] = {}
    events = last_id = 0
    for page in history.pages():
        for nid, key, version, topic, state in page:
            f = history.decode(state)
            head = heads.get(key)
            if head is None:
                heads[key] = [version, f.get("chain"), kind_of(topic), f.get("ref")]
            elif version > head[0]:
                head[0], head[1] = version, f.get("chain")
            last_id = nid
        events += len(page)
        if progress:
            progress(len(page))
    streams = [
        {"stream": k, "kind": h[2], "ref": h[3], "version": h[0], "chain": h[1]}
        for k, h in sorted(heads.items())
    ]
    return {
        "format": SEAL_FORMAT,
        "events": events,
        "last_id": last_id,
        "streams": streams,
        "digest": seal_digest((s["stream"], s["version"], s["chain"]) for s in streams),
    }


def load_seal(text: str) -> dict[str, Any]:
    try:
        data = json.loads(text)
        assert data["format"] == SEAL_FORMAT
        [(s["stream"], int(s["version"]), s["chain"]) for s in data["streams"]]
    except (ValueError, KeyError, TypeError, AssertionError):
        raise ValidationError("not an escrow audit seal (from `escrow audit seal`)") from None
    return dict(data)
