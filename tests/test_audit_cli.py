"""`escrow audit ...` as an auditor runs it: every command answers, none writes to the store
(SQLite: the same file bytes and event count after all of them; PostgreSQL: a read-only
session that refuses writes), and exit codes say clean (0), violations (1), cannot run (2)."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import sqlite3
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from escrow.clock import ManualClock
from escrow.commands.api import Escrow
from escrow.commands.audit.history import History
from escrow.commands.cli.main import main
from escrow.recording import stream_id
from tests.conftest import AGENTS, START
from tests.helpers import order_fields, paid_order


def story(url: str, clock: ManualClock) -> None:
    """A C4 appeal (S2, window closing, resolution) and a plain release, one minute apart."""
    with Escrow(url, clock=clock, agents=AGENTS) as engine:
        steps: list[tuple[str, dict[str, Any]]] = [
            ("create_order", order_fields("P2P-1", amount="0.000000000000000001")),
            ("mark_paid", {"order": "P2P-1", "by": "bob"}),
            (
                "open_appeal",
                {
                    "order": "P2P-1",
                    "appeal": "AP-1",
                    "by": "alice",
                    "reason": "bank_account_frozen",
                },
            ),
        ]
        for name, fields in steps:
            engine.run(name, fields)
            clock.advance(timedelta(minutes=1))
        paid_order(engine, "P2P-2", buyer="erin")
        engine.run("release", {"order": "P2P-2", "by": "alice"})
        clock.advance(timedelta(hours=24))
        engine.tick()
        engine.run("resolve_appeal", {"appeal": "AP-1", "by": "carol", "outcome": "release"})


def audit(url: str, *args: str) -> Result:
    return CliRunner().invoke(main, ["--store", url, "audit", *args], catch_exceptions=False)


def fingerprint(path: Path) -> tuple[int, dict[str, str]]:
    count = (
        sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        .execute("SELECT COUNT(*) FROM stored_events")
        .fetchone()[0]
    )
    files = {
        p.name: hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(path.parent.glob(path.name + "*"))
    }
    return int(count), files


def test_every_audit_command_reads_and_never_writes(tmp_path: Path, clock: ManualClock) -> None:
    db = tmp_path / "escrow.db"
    url = f"sqlite:///{db}"
    story(url, clock)
    before = fingerprint(db)
    paid_at = (START + timedelta(minutes=1, seconds=30)).isoformat().replace("+00:00", "Z")

    shown = audit(url, "show", "order", "P2P-1", "--at", paid_at, "--json")
    assert shown.exit_code == 0, shown.output
    data = json.loads(shown.stdout)
    assert (data["version"], data["state"]["state"], data["state"]["amount"]) == (
        2,
        "paid",
        "0.000000000000000001",
    )
    table = audit(url, "show", "trader", "bob", "--version", "2")
    assert table.exit_code == 0 and "trading_suspension_24h" in table.stdout

    changed = json.loads(
        audit(url, "diff", "order", "P2P-1", "--from", "1", "--to", paid_at, "--json").stdout
    )
    assert {c["field"]: c["after"] for c in changed["changes"]}["state"] == "paid"
    assert [e["event"] for e in changed["events"]] == ["Order.MarkedPaid"]
    assert "awaiting_payment" in audit(url, "diff", "order", "P2P-1", "--from", "v1").stdout

    entries = json.loads(audit(url, "timeline", "order", "P2P-1", "--json").stdout)
    assert [e["event"] for e in entries][-2:] in (
        ["Appeal.Resolved", "Order.AppealResolved"],
        ["Order.AppealResolved", "Appeal.Resolved"],
    )
    assert "Trader.Sanctioned" in {e["event"] for e in entries}
    assert "Trader.SanctionExpired" in audit(url, "timeline", "order", "P2P-1").stdout

    verified = audit(url, "verify", "--json")
    assert verified.exit_code == 0 and json.loads(verified.stdout)["clean"]
    text = audit(url, "verify", "--jobs", "2")
    assert text.exit_code == 0 and "clean" in text.stdout

    seal_file = tmp_path / "seal.json"
    assert audit(url, "seal", "-o", str(seal_file)).exit_code == 0
    assert audit(url, "verify", "--seal", str(seal_file)).exit_code == 0

    exported = audit(url, "export", "--format", "jsonl")
    records = [json.loads(line) for line in exported.stdout.splitlines()]
    assert len(records) == before[0]
    assert records[0]["data"]["amount"] == "0.000000000000000001"
    out = tmp_path / "since.csv"
    since = (START + timedelta(hours=1)).isoformat()
    assert audit(url, "export", "--format", "csv", "--since", since, "-o", str(out)).exit_code == 0
    rows = list(csv.DictReader(io.StringIO(out.read_text())))
    assert rows and all(r["at"] >= since.replace("+00:00", "Z") for r in rows)
    only = audit(url, "export", "--order", "P2P-2").stdout.splitlines()
    assert {json.loads(line)["ref"] for line in only} == {"P2P-2"}

    assert fingerprint(db) == before


def test_exit_codes_and_violations(tmp_path: Path, clock: ManualClock) -> None:
    db = tmp_path / "escrow.db"
    url = f"sqlite:///{db}"
    story(url, clock)
    with sqlite3.connect(db) as conn:
        conn.execute(
            "DELETE FROM stored_events WHERE originator_id = ? AND originator_version = 2",
            [stream_id("order", "P2P-1").hex],
        )
    result = audit(url, "verify")
    assert result.exit_code == 1
    assert "order P2P-1 v3 [chain] version 2 missing before it: removed" in result.stdout
    report = json.loads(audit(url, "verify", "--json").stdout)
    assert not report["clean"] and {v["rule"] for v in report["violations"]} == {"chain"}

    assert audit(f"sqlite:///{tmp_path / 'none.db'}", "verify").exit_code == 2
    assert audit(url, "show", "order", "nope").exit_code == 2
    bare = audit(url, "show", "order", "P2P-1", "--at", "2026-03-01T10:00:00")
    assert bare.exit_code == 2 and "zone" in bare.output
    bad = tmp_path / "bad.json"
    bad.write_text("{}")
    assert audit(url, "verify", "--seal", str(bad)).exit_code == 2


def test_postgres_audits_read_in_a_read_only_session(
    pg_schema_url: str, clock: ManualClock
) -> None:
    story(pg_schema_url, clock)
    with History.open(pg_schema_url) as history:
        before = history.count()
        with pytest.raises(Exception, match="read-only"), history._pg_cursor() as cur:
            cur.execute("CREATE TABLE audit_was_here (i int)")
    for args in (
        ("verify",),
        ("verify", "--jobs", "2"),
        ("show", "order", "P2P-1"),
        ("timeline", "order", "P2P-1"),
        ("seal",),
        ("export",),
    ):
        assert audit(pg_schema_url, *args).exit_code == 0, args
    with History.open(pg_schema_url) as history:
        assert history.count() == before


def test_sqlite_audits_open_the_file_read_only(tmp_path: Path, clock: ManualClock) -> None:
    url = f"sqlite:///{tmp_path / 'escrow.db'}"
    story(url, clock)
    with (
        History.open(url) as history,
        pytest.raises(Exception, match="readonly"),
        history.recorder.datastore.transaction(commit=True) as c,
    ):
        c.execute("CREATE TABLE audit_was_here (i int)")
