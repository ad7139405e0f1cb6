"""`verify` over a whole store: a store the engine wrote is clean; raw-SQL tampering with the
event tables (SQLite and PostgreSQL) is named with its stream, version and what is wrong; a
seal catches a history rewritten consistently; forged but well-chained events that break a
rule are named with the rule."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator
from datetime import timedelta
from decimal import Decimal
from typing import Any
from uuid import UUID

import psycopg
import pytest

from escrow.appeal import Appeal
from escrow.application import project
from escrow.clock import ManualClock
from escrow.commands.api import Escrow
from escrow.commands.audit.history import History, seal, timeline
from escrow.commands.audit.report import Report
from escrow.commands.audit.verify import verify, verify_store
from escrow.commands.simulation.simulate import simulate
from escrow.complaint import Complaint
from escrow.order import Order
from escrow.recording import EscrowAggregate, stored_digest, stream_id
from escrow.trader import Trader
from tests.conftest import AGENTS, START
from tests.helpers import order_fields, paid_order


def lines(report: Report) -> list[str]:
    return [f.line() for f in report.findings]


def check(url: str, **kw: Any) -> Report:
    with History.open(url) as history:
        return verify(history, **kw)


# --- a store the engine wrote ---------------------------------------------------------------


def test_a_store_the_engine_wrote_verifies_clean(
    engine: Escrow, store_url: str, clock: ManualClock
) -> None:
    simulate(engine, 12, seed=5)  # every reason, deadlines firing, sanctions applied and lifted
    engine.catch_up()  # deferred read models (PostgreSQL): what `escrow projections run` does
    history = History(engine.app) if store_url == "memory:" else History.open(store_url)
    try:
        report = verify(history)
    finally:
        history.close()
    assert report.clean, lines(report)
    assert report.events == int(engine.app.recorder.max_notification_id())
    for asset, sums in report.assets.items():
        ledger = engine.ledger(asset)
        assert (sums["in_escrow"], sums["released"], sums["returned"]) == (
            ledger.in_escrow,
            ledger.released,
            ledger.returned,
        )
    assert report.ledger_checked == (store_url != "memory:")


# --- tampering with the stored events, in raw SQL -------------------------------------------


class RawStore:
    """The event table of a SQLite or PostgreSQL store, under raw SQL (an attacker's view)."""

    def __init__(self, url: str) -> None:
        self.url = url
        if url.startswith("sqlite"):
            self.db: Any = sqlite3.connect(url.removeprefix("sqlite:///"), isolation_level=None)
            names = self.db.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table' AND name LIKE '%events'"
            ).fetchall()
            self.table, self.p = names[0][0], "?"
        else:
            conninfo, _, query = url.partition("?")
            schema = query.removeprefix("schema=")
            self.db = psycopg.connect(conninfo, autocommit=True)
            names = self.db.execute(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = %s "
                "AND table_name LIKE %s",
                [schema, "%events"],
            ).fetchall()
            self.table, self.p = f'"{schema}"."{names[0][0]}"', "%s"

    def close(self) -> None:
        self.db.close()

    def key(self, kind: str, ref: str) -> Any:
        uid = stream_id(kind, ref)
        return uid.hex if self.p == "?" else uid

    def run(self, sql: str, params: list[Any]) -> int:
        cur = self.db.execute(sql.replace("?", self.p).replace("TABLE", self.table), params)
        return int(cur.rowcount)

    def read(self, kind: str, ref: str, version: int) -> tuple[str, bytes]:
        row = self.db.execute(
            f"SELECT topic, state FROM {self.table} WHERE originator_id = {self.p} "
            f"AND originator_version = {self.p}",
            [self.key(kind, ref), version],
        ).fetchone()
        return row[0], bytes(row[1])

    def write(self, kind: str, ref: str, version: int, state: bytes) -> None:
        sql = "UPDATE TABLE SET state = ? WHERE originator_id = ? AND originator_version = ?"
        assert self.run(sql, [state, self.key(kind, ref), version]) == 1

    def delete(self, kind: str, ref: str, version: int) -> None:
        sql = "DELETE FROM TABLE WHERE originator_id = ? AND originator_version = ?"
        assert self.run(sql, [self.key(kind, ref), version]) == 1

    def renumber(self, kind: str, ref: str, old: int, new: int) -> None:
        sql = "UPDATE TABLE SET originator_version = ? WHERE originator_id = ? AND originator_version = ?"
        assert self.run(sql, [new, self.key(kind, ref), old]) == 1

    def insert(self, key: Any, version: int, topic: str, state: bytes) -> None:
        sql = "INSERT INTO TABLE (originator_id, originator_version, topic, state) VALUES (?, ?, ?, ?)"
        assert self.run(sql, [key, version, topic, state]) == 1


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Any) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'escrow.db'}"
    return str(request.getfixturevalue("pg_schema_url"))


@pytest.fixture
def written(db_url: str, clock: ManualClock) -> Iterator[RawStore]:
    """Two released orders (3 events each) written by the engine, then the engine closed."""
    with Escrow(db_url, clock=clock, agents=AGENTS) as engine:
        for ref in ("o1", "o2"):
            paid_order(engine, ref)
            clock.advance(timedelta(minutes=1))
            engine.run("release", {"order": ref, "by": "alice"})
        engine.catch_up()  # deferred read models (PostgreSQL): what the runner does
    raw = RawStore(db_url)
    yield raw
    raw.close()


AMOUNT = b'"amount":{"_type_":"decimal_str","_data_":"500"}'


def test_an_untouched_store_is_clean_and_each_tampering_is_named(written: RawStore) -> None:
    assert check(written.url).clean
    _topic, state = written.read("order", "o1", 1)
    assert AMOUNT in state
    written.write("order", "o1", 1, state.replace(AMOUNT, AMOUNT.replace(b"500", b"5000")))
    assert lines(check(written.url)) == [
        "order o1 v1 [chain] does not match its chain digest: its content was changed, or it "
        "was forged and inserted",
        "ledger USDT [escrow] the ledger read model says in escrow/released/returned "
        "0/1000/0; the events say 0/5500/0",
    ]


def test_a_removed_event_is_named(written: RawStore) -> None:
    written.delete("order", "o1", 2)
    assert lines(check(written.url)) == ["order o1 v3 [chain] version 2 missing before it: removed"]


def test_swapped_versions_are_named(written: RawStore) -> None:
    written.renumber("order", "o2", 2, -1)
    written.renumber("order", "o2", 3, 2)
    written.renumber("order", "o2", -1, 3)
    found = lines(check(written.url))
    assert sorted(found) == [
        "order o2 v2 [chain] holds the event recorded as version 3: stored versions were "
        "changed (events reordered or swapped)",
        "order o2 v3 [chain] holds the event recorded as version 2: stored versions were "
        "changed (events reordered or swapped)",
    ]


def test_an_inserted_forged_event_is_named(written: RawStore) -> None:
    topic, released = written.read("order", "o2", 3)
    written.insert(written.key("order", "o1"), 4, topic, released)  # a second release of o1
    topic, created = written.read("order", "o1", 1)
    ghost = UUID(int=7)
    written.insert(ghost.hex if written.p == "?" else ghost, 1, topic, created)  # a new stream
    found = lines(check(written.url))
    digest = (
        "does not match its chain digest: its content was changed, or it was forged and inserted"
    )
    late = "recorded at 2026-03-01T10:00:00+00:00, 0:02:00 before an event committed earlier in the log"
    assert sorted(found) == sorted(
        [
            f"order o1 v4 [chain] {digest}",
            f"order o1 v1 [chain] {digest}",
            f"order o1 v1 [time] {late}",
        ]
    )  # the copied creation, appended last, also went back in time
    report = check(written.url)
    assert {f.stream for f in report.findings} == {str(stream_id("order", "o1")), str(ghost)}


def test_two_processes_find_what_one_finds(written: RawStore) -> None:
    written.delete("order", "o1", 2)
    written.renumber("order", "o2", 3, 9)
    one = verify_store(written.url, jobs=1)
    two = verify_store(written.url, jobs=2)
    assert sorted(lines(one)) == sorted(lines(two)) and len(lines(one)) == 2
    assert (one.events, one.streams, one.assets) == (two.events, two.streams, two.assets)


def test_the_ledger_read_model_must_agree_with_the_events(written: RawStore) -> None:
    rewrite(written, "order", "o1", 1, lambda f: f.update(amount=Decimal("5000")))
    report = check(written.url)
    assert report.ledger_checked
    assert lines(report) == [
        "ledger USDT [escrow] the ledger read model says in escrow/released/returned "
        "0/1000/0; the events say 0/5500/0"
    ]


# --- seals ----------------------------------------------------------------------------------


def rewrite(
    raw: RawStore, kind: str, ref: str, version: int, change: Callable[[dict[str, Any]], Any]
) -> None:
    """Change one event and recompute the chain from there on: a consistent forgery."""
    with History.open(raw.url) as history:
        events = history.stream(stream_id(kind, ref))
        transcoder = history.app.mapper.transcoder
    previous = events[version - 2][2]["chain"] if version > 1 else ""
    for v, topic, fields in events[version - 1 :]:
        if v == version:
            change(fields)
        fields.pop("chain")
        body = dict(fields)
        chain = stored_digest(previous, topic, str(stream_id(kind, ref)), v, body)
        raw.write(kind, ref, v, transcoder.encode({**fields, "chain": chain}))
        previous = chain


def test_a_consistent_rewrite_passes_the_chain_but_not_the_seal(written: RawStore) -> None:
    with History.open(written.url) as history:
        sealed = seal(history)
    assert len(sealed["streams"]) == 2 and check(written.url, sealed=sealed).clean
    rewrite(written, "order", "o1", 2, lambda f: f.update(actor="mallory"))
    assert check(written.url).clean  # every link recomputed: only the seal knows
    assert lines(check(written.url, sealed=sealed)) == [
        "order o1 v3 [seal] chain differs from the sealed head: history up to here was "
        "rewritten after the seal"
    ]


def test_the_seal_catches_a_removed_last_event(written: RawStore) -> None:
    with History.open(written.url) as history:
        sealed = seal(history)
    written.delete("order", "o2", 3)
    assert check(written.url).clean  # a shorter stream is a valid chain
    assert lines(check(written.url, sealed=sealed)) == [
        "order o2 v3 [seal] sealed at version 3, the store ends at version 2: events removed "
        "after the seal"
    ]
    assert sorted(lines(verify_store(written.url, sealed=sealed, jobs=2))) == lines(
        check(written.url, sealed=sealed)
    )


def test_an_altered_seal_is_caught(written: RawStore) -> None:
    with History.open(written.url) as history:
        sealed = seal(history)
    sealed["streams"][0]["version"] = 2
    assert "the seal's digest does not match its heads" in "".join(
        lines(check(written.url, sealed=sealed))
    )


# --- forged events with valid chains that break a rule ---------------------------------------


@pytest.fixture
def mem(clock: ManualClock) -> Iterator[Escrow]:
    with Escrow("memory:", clock=clock, agents=AGENTS) as engine:
        yield engine


def forge(engine: Escrow, cls: type[EscrowAggregate], ref: str, event: Any, **facts: Any) -> int:
    """Record an event the rules would refuse, with a correct chain; returns its version."""
    aggregate = engine.app.repository.get(stream_id(cls.KIND, ref), projector_func=project)
    at = facts.pop("at", engine.clock.now())
    aggregate._record(event, actor=facts.pop("actor", "mallory"), rule=None, at=at, **facts)
    engine.app.save(aggregate)
    return int(aggregate.version)


def found(engine: Escrow) -> list[str]:
    return lines(verify(History(engine.app)))


def appeal(engine: Escrow, reason: str, by: str = "bob", ref: str = "a1") -> None:
    engine.run("open_appeal", {"order": "o1", "appeal": ref, "by": by, "reason": reason})


def test_release_while_an_appeal_is_open(mem: Escrow) -> None:
    paid_order(mem)
    appeal(mem, "seller_not_releasing")
    assert found(mem) == []
    v = forge(mem, Order, "o1", Order.Released, actor="alice", state="completed")
    assert found(mem) == [f"order o1 v{v} [A5] released by alice while appeal a1 was open"]


def test_terminal_state_left_and_escrow_settled_twice(mem: Escrow) -> None:
    paid_order(mem)
    mem.run("release", {"order": "o1", "by": "alice"})
    v = forge(mem, Order, "o1", Order.Cancelled, state="cancelled", reason="buyer_cancelled")
    assert found(mem) == [
        f"order o1 v{v} [terminal] order left the terminal state completed for cancelled",
        f"order o1 v{v} [escrow] escrow of 500 USDT settled twice: released, then returned",
    ]


def test_payment_window_expiry_early_or_after_payment(mem: Escrow, clock: ManualClock) -> None:
    mem.run("create_order", order_fields("o1"))
    early = forge(
        mem,
        Order,
        "o1",
        Order.Cancelled,
        actor="system",
        state="cancelled",
        reason="payment_window_expired",
    )
    assert found(mem) == [
        f"order o1 v{early} [O3] payment window expiry fired early: at {START.isoformat()}, "
        f"before the deadline {(START + timedelta(minutes=15)).isoformat()}"
    ]
    paid_order(mem, "o2")
    clock.advance(timedelta(hours=1))
    late = forge(
        mem,
        Order,
        "o2",
        Order.Cancelled,
        actor="system",
        state="cancelled",
        reason="payment_window_expired",
    )
    assert (
        f"order o2 v{late} [O3] payment window expiry fired on a paid order, where it no longer applied"
        in found(mem)
    )


def test_one_resolution_per_issue(mem: Escrow) -> None:
    paid_order(mem)
    appeal(mem, "seller_not_releasing")
    mem.run("start_review", {"appeal": "a1", "by": "carol"})
    mem.run("resolve_appeal", {"appeal": "a1", "by": "carol", "outcome": "release"})
    assert found(mem) == []
    v = forge(
        mem,
        Order,
        "o1",
        Order.AppealResolved,
        state="completed",
        appeal="a1",
        issue="seller_not_releasing",
        outcome="none",
    )
    assert found(mem) == [
        f"order o1 v{v} [A3] appeal a1 resolved issue seller_not_releasing, already resolved "
        "on this order"
    ]


def test_freeze_window_and_suspension_ending_early(mem: Escrow, clock: ManualClock) -> None:
    paid_order(mem)
    appeal(mem, "bank_account_frozen", by="alice")
    clock.advance(timedelta(hours=1))
    closed = forge(
        mem, Appeal, "a1", Appeal.FreezeWindowClosed, actor="system", state="under_review"
    )
    expired = forge(mem, Trader, "bob", Trader.SanctionExpired, actor="system", sanctions=[1])
    at, until = clock.now().isoformat(), (START + timedelta(hours=24)).isoformat()
    assert found(mem) == [
        f"appeal a1 v{closed} [C4] freeze window closed early: at {at}, before {until}",
        f"trader bob v{expired} [S2] sanction #1 expired early: at {at}, before {until}",
    ]


def test_payment_proof_deadline_fired_twice(mem: Escrow, clock: ManualClock) -> None:
    paid_order(mem, instant=False)
    appeal(mem, "payment_not_received", by="alice")
    mem.run("start_review", {"appeal": "a1", "by": "carol"})
    mem.run("request_payment_proof", {"appeal": "a1", "by": "carol"})
    clock.advance(timedelta(days=2))
    mem.tick()
    assert mem.appeal("a1").state == "resolved" and found(mem) == []
    v = forge(
        mem,
        Appeal,
        "a1",
        Appeal.ProofDeadlinePassed,
        actor="system",
        state="resolved",
        outcome="cancel",
    )
    assert found(mem) == [
        f"appeal a1 v{v} [C1] payment proof deadline fired with none pending (a second time, "
        "or after the proof)"
    ]


def test_sanctions_must_trace_to_their_appeal(mem: Escrow) -> None:
    paid_order(mem)
    appeal(mem, "seller_not_releasing")
    mem.run(
        "apply_sanction", {"trader": "alice", "by": "carol", "kind": "partial_ban", "appeal": "a1"}
    )
    assert found(mem) == []
    until = mem.clock.now() + timedelta(hours=24)
    common: dict[str, Any] = {"severity": None, "offence": None, "expires_at": until}
    s2 = forge(
        mem,
        Trader,
        "alice",
        Trader.Sanctioned,
        sanction=2,
        kind="trading_suspension_24h",
        appeal="a1",
        **common,
    )
    ghost = forge(
        mem,
        Trader,
        "alice",
        Trader.Sanctioned,
        sanction=3,
        kind="partial_ban",
        appeal="ghost",
        **common,
    )
    assert found(mem) == [
        f"trader alice v{s2} [C4] S2 from appeal a1, a seller_not_releasing appeal: only a C4 "
        "or C6 appeal causes it",
        f"trader alice v{ghost} [S1] partial_ban names appeal ghost, which does not exist",
    ]


def test_the_transcoder_path_checks_the_same_chains(written: RawStore) -> None:
    """Stores with a cipher or compressor are read through the application's transcoder."""
    _topic, state = written.read("order", "o1", 3)
    written.write("order", "o1", 3, state.replace(b'"actor":"alice"', b'"actor":"mallory"'))
    with History.open(written.url) as history:
        history._fast = False
        assert lines(verify(history)) == [
            "order o1 v3 [chain] does not match its chain digest: its content was changed, or "
            "it was forged and inserted"
        ]


# --- after the trade: clawbacks and complaints (K2, E2, E4) ----------------------------------


def reversed_and_complained(engine: Escrow) -> None:
    """o1 released, a1 (C6) with a 300 clawback, resolved; bob's complaint k1 under review."""
    paid_order(engine)
    engine.run("release", {"order": "o1", "by": "alice"})
    appeal(engine, "payment_reversed", by="alice")
    engine.run("start_review", {"appeal": "a1", "by": "carol"})
    engine.run("confirm_reversal", {"appeal": "a1", "by": "carol", "amount": "300"})
    engine.run("record_recovery", {"appeal": "a1", "by": "carol", "amount": "100"})
    engine.run("resolve_appeal", {"appeal": "a1", "by": "carol"})
    engine.run(
        "file_complaint", {"complaint": "k1", "appeal": "a1", "by": "bob", "statement": "not me"}
    )
    engine.run("start_complaint_review", {"complaint": "k1", "by": "sam"})


@pytest.fixture
def supervised(clock: ManualClock) -> Iterator[Escrow]:
    with Escrow("memory:", clock=clock, agents=AGENTS, supervisors={"sam"}) as engine:
        yield engine


def test_K2_recovered_never_above_the_clawback(supervised: Escrow) -> None:
    reversed_and_complained(supervised)
    assert found(supervised) == []
    v = forge(
        supervised,
        Appeal,
        "a1",
        Appeal.RecoveryRecorded,
        asset="USDT",
        amount=Decimal("250"),
        clawback_state="open",
    )
    assert found(supervised) == [f"appeal a1 v{v} [K2] recovered 350, above the clawback of 300"]


def test_E4_compensation_above_the_fiat_amount_and_E2_decided_twice(supervised: Escrow) -> None:
    reversed_and_complained(supervised)
    supervised.run(
        "decide_complaint",
        {"complaint": "k1", "by": "sam", "decision": "overturned", "compensation": "460"},
    )
    assert found(supervised) == []
    facts = dict(state="overturned", complainant="bob", decision="overturned")
    v = forge(supervised, Complaint, "k1", Complaint.Decided, compensation=Decimal("461"), **facts)
    assert found(supervised) == [
        f"complaint k1 v{v} [E2] complaint decided again (overturned before)",
        f"complaint k1 v{v} [E4] compensation of 461, above the order's fiat amount 460.00 "
        "(or not positive)",
    ]


def test_timeline_shows_clawbacks_and_complaints(supervised: Escrow) -> None:
    reversed_and_complained(supervised)
    events = [(e.kind, e.event, e.rule) for e in timeline(History(supervised.app), "o1")]
    assert ("appeal", "Appeal.ReversalConfirmed", "K1") in events
    assert ("appeal", "Appeal.RecoveryRecorded", "K2") in events
    assert ("complaint", "Complaint.Filed", "E1") in events
    assert ("complaint", "Complaint.ReviewStarted", "E3") in events
    assert ("trader", "Trader.Sanctioned", "K1") in events  # the S4 the reversal caused
