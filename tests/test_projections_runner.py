"""The separate projection process: exactly once across a SIGKILL, following new events,
holes in PostgreSQL's ids, and the `views` / `projections` command line.

The backlog is written with `escrow.projections.synthetic.fill` (the engine's aggregates saved in
batches, nothing projected), as events written by another process would be.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg
import pytest
from click.testing import CliRunner

from escrow.application import EscrowApplication
from escrow.clock import ManualClock
from escrow.commands.api import Escrow
from escrow.commands.cli.main import main
from escrow.errors import EscrowError
from escrow.order import Order
from escrow.policy import Policy
from escrow.projections.base import Projector
from escrow.projections.catalog import read_models
from escrow.projections.readstore import ReadStore
from escrow.projections.runner import Runner
from escrow.projections.synthetic import START, fill
from escrow.store import parse_store_url
from tests.conftest import AGENTS
from tests.helpers import paid_order
from tests.test_projections import snapshot

ESCROW = str(Path(sys.executable).with_name("escrow"))


def positions(url: str) -> list[int]:
    config = parse_store_url(url)
    read = ReadStore.open(config)
    try:
        return [int(p) for (p,) in read.query("SELECT position FROM escrow_tracking")]
    finally:
        read.close()


def head(url: str) -> int:
    app = EscrowApplication(env=parse_store_url(url).env)
    try:
        return int(app.recorder.max_notification_id() or 0)
    finally:
        app.close()


def start_runner(url: str, *more: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [ESCROW, "--store", url, "projections", "run", "--quiet", *more],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


@pytest.mark.postgres
@pytest.mark.parametrize("backend", ["postgresql", "sqlite"])
def test_a_killed_runner_resumes_and_counts_every_event_once(
    backend: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    url = (
        str(request.getfixturevalue("pg_schema_url"))
        if backend == "postgresql"
        else f"sqlite:///{tmp_path / 'escrow.db'}"
    )
    config = parse_store_url(url)
    app = EscrowApplication(env=config.env)
    fill(app, 12_000, seed=7)
    last = int(app.recorder.max_notification_id() or 0)
    read = ReadStore.open(config)
    Projector(app, read, read_models())  # the tables, all at position 0: nothing projected
    read.close()
    app.close()

    runner = start_runner(url, "--batch", "100")
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        seen = positions(url)
        if min(seen) > 0 and max(seen) < last * 3 // 4:
            break
        assert runner.poll() is None, runner.stderr.read() if runner.stderr else ""
        time.sleep(0.005)
    runner.send_signal(signal.SIGKILL)
    runner.wait()
    at_kill = positions(url)
    assert min(at_kill) > 0 and max(at_kill) < last, f"not killed mid-stream: {at_kill} of {last}"

    resumed = subprocess.run(
        [ESCROW, "--store", url, "projections", "run", "--quiet", "--until-idle"],
        capture_output=True,
        timeout=300,
    )
    assert resumed.returncode == 0, resumed.stderr
    assert set(positions(url)) == {last}

    with Escrow(url, clock=ManualClock(START), agents=AGENTS) as engine:
        resumed_tables = snapshot(engine)
        assert len(resumed_tables["escrow_orders"]) > 2000
        engine.projector.rebuild()
        assert snapshot(engine) == resumed_tables, "resume after SIGKILL differs from a rebuild"


def test_the_runner_follows_events_as_they_are_committed(store_url: str) -> None:
    if store_url == "memory:":
        with pytest.raises(EscrowError, match="one process"):
            Runner(store_url)
        return
    runner = Runner(store_url, poll=0.05)
    thread = threading.Thread(target=runner.run)
    thread.start()
    try:
        app = EscrowApplication(env=parse_store_url(store_url).env)
        for seed in range(3):
            fill(app, 50, seed=seed, wave=10, start=START + timedelta(days=seed), prefix=f"s{seed}")
            committed = time.monotonic()
            last = int(app.recorder.max_notification_id() or 0)
            while min(positions(store_url)) < last:
                assert time.monotonic() - committed < 30, "the runner did not follow"
                time.sleep(0.005)
        app.close()
    finally:
        runner.stop()
        thread.join(timeout=30)
        runner.close()
    assert not thread.is_alive(), "stop() did not end run()"
    with Escrow(store_url) as engine:
        live = snapshot(engine)
        assert len(live["escrow_orders"]) >= 30
        engine.projector.rebuild()
        assert snapshot(engine) == live


def new_order(ref: str) -> Order:
    policy = Policy()
    order = Order.create(
        ref=ref,
        seller="ann",
        buyer="ben",
        asset="USDT",
        amount=Decimal(100),
        price=Decimal("0.9"),
        fiat="EUR",
        payment_method="sepa",
        instant=True,
        reference_price=Decimal("0.9"),
        payment_window=policy.payment_window,
        policy=policy,
        at=START,
    )
    return order


def projected(engine: Escrow) -> set[str]:
    return {str(r) for (r,) in engine.read.query("SELECT ref FROM escrow_orders")}


@pytest.mark.postgres
def test_a_hole_in_the_ids_is_waited_for_not_skipped(pg_schema_url: str) -> None:
    """A writer holds id N uncommitted while id N+1 commits: the projector does not move past
    N while N's transaction runs; once it ends, N is projected (commit) or is a hole for good
    (rollback), and N+1 is projected either way."""
    config = parse_store_url(pg_schema_url)
    assert config.postgres_conninfo is not None
    writer = EscrowApplication(env=config.env)  # records without projecting
    with Escrow(pg_schema_url, clock=ManualClock(START), agents=AGENTS) as engine:
        table = f'"{config.postgres_schema}"."{engine.app.recorder.events_table_name}"'
        for outcome in ("commit", "rollback"):
            held = writer.mapper.to_stored_event(new_order(f"held-{outcome}").collect_events()[0])
            slow = psycopg.connect(config.postgres_conninfo)
            slow.execute(
                f"INSERT INTO {table} (originator_id, originator_version, topic, state) "
                "VALUES (%s, %s, %s, %s)",
                [held.originator_id, held.originator_version, held.topic, held.state],
            )
            writer.save(new_order(f"later-{outcome}"))
            started = time.monotonic()
            engine.projector.catch_up()  # waits SETTLE_TIMEOUT_MS for the writer, then stops
            assert time.monotonic() - started >= 1.5
            assert f"later-{outcome}" not in projected(engine), "moved past a hole in flight"

            thread = threading.Thread(target=engine.projector.catch_up)
            thread.start()
            time.sleep(0.3)
            slow.commit() if outcome == "commit" else slow.rollback()
            slow.close()
            thread.join(timeout=30)
            assert f"later-{outcome}" in projected(engine)
            assert (f"held-{outcome}" in projected(engine)) == (outcome == "commit")
        live = snapshot(engine)
        engine.projector.rebuild()
        assert snapshot(engine) == live
    writer.close()


# --- the command line ---------------------------------------------------------------------


def cli(url: str, *args: str) -> Any:
    result = CliRunner().invoke(main, ["--store", url, *args], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result


def test_views_and_projections_on_the_command_line(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'escrow.db'}"
    with Escrow(url, clock=ManualClock(START), agents=AGENTS) as engine:
        paid_order(engine, "o1")
        paid_order(engine, "o2", seller="cat", buyer="dan")
        engine.run(
            "open_appeal",
            {"order": "o2", "by": "dan", "reason": "seller_not_releasing", "appeal": "a1"},
        )
        engine.run("release", {"order": "o1", "by": "alice"})
    orders = json.loads(cli(url, "views", "orders", "--json").output)
    assert {o["order"]: o["state"] for o in orders} == {"o1": "completed", "o2": "in_appeal"}
    paid = json.loads(cli(url, "views", "orders", "--state", "completed", "--json").output)
    assert [o["order"] for o in paid] == ["o1"]
    at = (START + timedelta(hours=5)).isoformat()
    queue = json.loads(
        cli(url, "views", "appeals", "--older-than", "1h", "--at", at, "--json").output
    )
    assert [(a["appeal"], a["waits_on"], a["age"]) for a in queue] == [("a1", "review", "PT5H")]
    assert (
        json.loads(cli(url, "views", "appeals", "--older-than", "6h", "--at", at, "--json").output)
        == []
    )
    bob = json.loads(cli(url, "views", "traders", "bob", "--json").output)
    assert (bob["trader"], bob["completed"], bob["orders"]) == ("bob", 1, 1)
    ledger = json.loads(cli(url, "views", "ledger", "--json").output)
    assert ledger == [
        {
            "asset": "USDT",
            "in_escrow": "500",
            "released": "500",
            "returned": "0",
            "clawback_owed": "0",
            "clawback_recovered": "0",
        }
    ]
    lines = json.loads(cli(url, "views", "ledger", "--order", "o1", "--json").output)
    assert [line["movement"] for line in lines] == ["released", "locked"]
    assert "o2" in cli(url, "views", "orders").output
    assert "a1" in cli(url, "views", "appeals").output
    assert "bob" in cli(url, "views", "traders").output
    status = json.loads(cli(url, "projections", "status", "--json").output)
    assert {r["behind"] for r in status["read_models"]} == {0}
    assert "rebuilt orders" in cli(url, "projections", "rebuild", "orders").output
    assert json.loads(cli(url, "views", "orders", "--json").output) == orders
    bad = CliRunner().invoke(main, ["--store", url, "projections", "rebuild", "nope"])
    assert bad.exit_code == 2 and "nope" in bad.output
