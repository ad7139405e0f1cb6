"""The relay against the real NATS server (127.0.0.1:4222, JetStream): every event of a store
arrives once and in log order, with the contract's subject, header and JSON, after `kill -9`
of the relay at random instants, a restart of the NATS server and a restart of PostgreSQL.

Each test has a stream and subject prefix of its own and deletes its stream afterwards (the
server is shared). The broker and PostgreSQL restarts are marked `restarts` (other sessions on
this machine use both servers: `-m "not restarts"` leaves them out), and each brings its
server back up even when it fails.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import sqlite3
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import nats
import pytest

from escrow.application import EscrowApplication
from escrow.commands.audit.history import History
from escrow.commands.events import EventFeed
from escrow.commands.relay.relay import position_of, status_of, subject
from escrow.projections.synthetic import START, fill
from escrow.store import mask, parse_store_url

NATS_URL = os.environ.get("ESCROW_TEST_NATS", "nats://127.0.0.1:4222")
ESCROW = str(Path(sys.executable).with_name("escrow"))
NATS_SERVER = "/usr/sbin/nats-server"
START_NATS = [
    "start-stop-daemon", "--start", "--oknodo", "--background", "--exec", NATS_SERVER, "--",
    "-a", "127.0.0.1", "-p", "4222", "-js", "-sd", "/var/lib/nats-server",
]  # fmt: skip
STOP_NATS = ["start-stop-daemon", "--stop", "--oknodo", "--exec", NATS_SERVER]


def run(coroutine: Any) -> Any:
    return asyncio.run(coroutine)


async def _connect() -> Any:
    return await nats.connect(NATS_URL, connect_timeout=2, allow_reconnect=False)


def nats_ready(timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:

            async def ping() -> None:
                nc = await _connect()
                await nc.jetstream().account_info()
                await nc.close()

            run(ping())
            return True
        except Exception:
            time.sleep(0.2)
    return False


class Stream:
    """A test's own stream: its name, its prefix, and what it holds."""

    def __init__(self) -> None:
        tag = uuid.uuid4().hex[:10]
        self.name, self.prefix = f"T_{tag.upper()}", f"t{tag}"

    def messages(self) -> list[tuple[str, dict[str, str], dict[str, Any]]]:
        """(subject, headers, JSON) of every message, in stream order."""

        async def read() -> list[tuple[str, dict[str, str], dict[str, Any]]]:
            nc = await _connect()
            try:
                js = nc.jetstream()
                last = (await js.stream_info(self.name)).state.last_seq
                got = []
                for seq in range(1, last + 1):
                    msg = await js.get_msg(self.name, seq=seq)
                    got.append((msg.subject, dict(msg.headers or {}), json.loads(msg.data)))
                return got
            finally:
                await nc.close()

        return list(run(read()))

    def delete(self) -> None:
        async def delete() -> None:
            nc = await _connect()
            try:
                await nc.jetstream().delete_stream(self.name)
            except nats.js.errors.NotFoundError:
                pass
            finally:
                await nc.close()

        run(delete())


@pytest.fixture
def stream() -> Iterator[Stream]:
    if not nats_ready(3):
        pytest.skip(f"NATS with JetStream unreachable at {NATS_URL}")
    made = Stream()
    yield made
    nats_ready()
    made.delete()


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'escrow.db'}"
    return str(request.getfixturevalue("pg_schema_url"))


def record(url: str, events: int, seed: int) -> None:
    """Append whole order stories (each fill with a prefix of its own: new refs)."""
    app = EscrowApplication(env=parse_store_url(url).env)
    try:
        fill(app, events, seed=seed, wave=20, prefix=f"p{seed}-", start=START)
    finally:
        app.close()


def start_relay(url: str, stream: Stream, *more: str) -> subprocess.Popen[bytes]:
    command = [ESCROW, "--store", url, "relay", "--nats", NATS_URL, "--stream", stream.name]
    return subprocess.Popen(
        [*command, "--prefix", stream.prefix, "--poll", "0.1", *more],
        stderr=open(os.environ.get("ESCROW_TEST_RELAY_LOG", os.devnull), "ab"),
    )


def wait_caught_up(url: str, stream: Stream, timeout: float = 40.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            found = status_of(url, stream.name)
            if found.lag == 0 and found.head:
                return
        except Exception:
            pass  # the store restarting
        time.sleep(0.1)
    raise AssertionError(f"the relay did not catch up: {status_of(url, stream.name)}")


def check_stream(url: str, stream: Stream) -> int:
    """The stream holds every event of the store once, in log order, as the feed builds it."""
    app = EscrowApplication(env=parse_store_url(url).env)
    try:
        expected = EventFeed(History(app)).page(0, 10_000_000)
    finally:
        app.close()
    got = stream.messages()
    assert [m[2]["position"] for m in got] == [e["position"] for e in expected]
    assert [m[2] for m in got] == expected
    for (subject_, headers, event), seq in zip(got, range(1, len(got) + 1), strict=True):
        assert subject_ == subject(stream.prefix, event)
        assert position_of(headers["Nats-Msg-Id"]) == event["position"], seq
    return len(got)


def stop(relay: subprocess.Popen[bytes]) -> None:
    relay.terminate()
    try:
        relay.wait(10)
    except subprocess.TimeoutExpired:
        relay.kill()
        relay.wait()


def test_every_event_arrives_once_in_order(url: str, stream: Stream) -> None:
    record(url, 600, seed=1)
    relay = start_relay(url, stream, "--batch", "100")
    try:
        wait_caught_up(url, stream)
        record(url, 200, seed=2)  # while it runs: woken by the commit (or the poll)
        wait_caught_up(url, stream)
    finally:
        stop(relay)
    assert check_stream(url, stream) > 700
    published = stream.messages()
    assert published[0][0] == f"{stream.prefix}.order.Created"
    assert published[0][1]["Nats-Msg-Id"] == f"escrow:{published[0][2]['position']}"


def test_kill_9_at_random_instants_loses_and_repeats_nothing(
    tmp_path: Path, stream: Stream
) -> None:
    url = f"sqlite:///{tmp_path / 'escrow.db'}"
    record(url, 3000, seed=3)
    rng = random.Random(9)
    midway = 0
    for kill in range(10):
        record(url, 300, seed=10 + kill)  # the log grows between runs: always work to do
        before = status_of(url, stream.name).position
        relay = start_relay(url, stream, "--batch", str(rng.choice([5, 10, 20])))
        deadline = time.monotonic() + 20
        while status_of(url, stream.name).position == before and time.monotonic() < deadline:
            time.sleep(0.01)  # start-up: until its first batch is recorded
        time.sleep(rng.uniform(0, 0.3))  # then somewhere in a batch: sent, acked, recorded
        relay.kill()
        relay.wait()
        found = status_of(url, stream.name)
        midway += 0 < found.position < found.head
    assert midway >= 4, "the kills should land while the relay is busy"
    relay = start_relay(url, stream)
    try:
        wait_caught_up(url, stream)
    finally:
        stop(relay)
    check_stream(url, stream)


def wait_busy(url: str, stream: Stream) -> None:
    """Until the relay has recorded a first batch and has more to go: mid-run."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        found = status_of(url, stream.name)
        if found.position:
            assert found.position < found.head, "the relay finished before the restart"
            return
        time.sleep(0.02)
    raise AssertionError("the relay never started")


def _restart_nats() -> None:
    try:
        subprocess.run(STOP_NATS, check=True, timeout=30)
        time.sleep(1.0)
    finally:
        subprocess.run(START_NATS, check=True, timeout=30)
    assert nats_ready(), "NATS did not come back"


def relay_through(url: str, stream: Stream, restart: Callable[[], None]) -> None:
    """A backlog, the relay busy with it, `restart()`, more events: all in the stream once."""
    record(url, 3000, seed=4)
    relay = start_relay(url, stream, "--batch", "5")
    try:
        wait_busy(url, stream)
        restart()
        record(url, 200, seed=5)
        wait_caught_up(url, stream, timeout=60)
    finally:
        stop(relay)
    check_stream(url, stream)


@pytest.mark.restarts
def test_a_nats_restart_during_a_run(url: str, stream: Stream) -> None:
    try:
        relay_through(url, stream, _restart_nats)
    finally:
        subprocess.run(START_NATS, check=False, timeout=30)


@pytest.mark.restarts
@pytest.mark.postgres
def test_a_postgresql_restart_during_a_run(pg_schema_url: str, stream: Stream) -> None:
    pg_ctl = ["pg_ctlcluster", "--skip-systemctl-redirect", "15", "main"]
    try:
        relay_through(
            pg_schema_url,
            stream,
            lambda: subprocess.run([*pg_ctl, "restart"], check=True, timeout=60),
        )
    finally:
        subprocess.run([*pg_ctl, "start"], check=False, timeout=60, capture_output=True)


def test_passwords_never_reach_a_log_line() -> None:
    assert mask("postgresql://app:s3cret@db:5432/x?schema=a") == (
        "postgresql://app:***@db:5432/x?schema=a"
    )
    assert mask("nats://user:pw@127.0.0.1:4222") == "nats://user:***@127.0.0.1:4222"
    assert mask("sqlite:///x.db") == "sqlite:///x.db"


def test_the_example_consumer_applies_every_movement_once(tmp_path: Path, stream: Stream) -> None:
    url = f"sqlite:///{tmp_path / 'escrow.db'}"
    record(url, 400, seed=8)
    relay = start_relay(url, stream)
    try:
        wait_caught_up(url, stream)
    finally:
        stop(relay)
    wallet = tmp_path / "wallet.db"
    script = Path(__file__).resolve().parent.parent / "scripts" / "consume_events.py"
    for _ in range(2):  # the second run finds everything applied (and acked) already
        subprocess.run(
            [
                sys.executable,
                str(script),
                "--nats",
                NATS_URL,
                "--stream",
                stream.name,
                "--prefix",
                stream.prefix,
                "--db",
                str(wallet),
                "--idle",
                "1",
                "--quiet",
            ],
            check=True,
            timeout=60,
        )
    expected: dict[tuple[str, str], Decimal] = {}
    for _, _, event in stream.messages():
        if (moved := event["movement"]) is not None:
            key = (moved["to"], moved["asset"])
            expected[key] = expected.get(key, Decimal(0)) + Decimal(moved["amount"])
    with sqlite3.connect(wallet) as db:
        got = {(t, a): Decimal(v) for t, a, v in db.execute("SELECT * FROM balances")}
    assert got == expected and expected
