"""The relay's speed against raw nats-py publishing, and its lag from commit to acknowledgement.

- relay: a store of `--events` events (`escrow.projections.synthetic.fill`: the engine's own
  aggregates, rules and hash chain, saved a wave of orders at a time), relayed by `Relay` in
  this process into a fresh stream, from start to the last position recorded;
- raw: the very same JSON payloads (built beforehand, not timed), subjects and `Nats-Msg-Id`
  headers published with nats-py's `publish_async` into another fresh stream, in batches of
  the relay's size, every ack awaited per batch as the relay does: what publishing alone costs;
- relay and raw in turns, `--rounds` times (2), each figure its best round (the machine is
  shared: whatever else runs only ever slows a round down); ratio = relay ÷ raw (target ≥ 0.5);
- lag: on PostgreSQL, `escrow relay` in a process of its own while this one runs a steady load
  of commands (`--rate` lifecycles a second: create, mark paid, release) on the system clock for
  `--seconds`; per event, the stream's own store time of its message minus the event's `at`
  (decided just before its commit, so the figure errs long), p50 and p95 (target p95 ≤ 100 ms).

    .venv/bin/python scripts/bench_relay.py [--events N] [--store sqlite|postgresql] [--json]
    .venv/bin/python scripts/bench_relay.py --events 2000 --seconds 2 --json   # smoke size
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from datetime import datetime
from pathlib import Path

import msgspec
import nats
import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from escrow.application import EscrowApplication
from escrow.clock import SystemClock
from escrow.commands.api import Escrow
from escrow.commands.audit.history import History
from escrow.commands.events import EventFeed
from escrow.commands.relay.relay import MSG_ID, Relay, subject
from escrow.projections.synthetic import fill
from escrow.store import parse_store_url

PG = os.environ.get("ESCROW_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")
ESCROW = str(Path(sys.executable).with_name("escrow"))


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


async def delete_stream(nats_url: str, name: str) -> None:
    nc = await nats.connect(nats_url)
    try:
        await nc.jetstream().delete_stream(name)
    except nats.js.errors.NotFoundError:
        pass
    finally:
        await nc.close()


def relay_speed(url: str, nats_url: str, batch: int) -> tuple[int, float]:
    """(events published, events/s) for the relay from position 0 to the head."""
    name, prefix = f"BENCH_{uuid.uuid4().hex[:8].upper()}", f"bench{uuid.uuid4().hex[:8]}"
    relay = Relay(url, nats_url, stream=name, prefix=prefix, batch=batch, poll=0.05)
    head = relay.follower.head()

    async def run() -> float:
        started = time.perf_counter()
        task = asyncio.create_task(relay.run())
        while await asyncio.to_thread(relay.follower.position) < head:
            await asyncio.sleep(0.01)
        elapsed = time.perf_counter() - started
        relay.stop()
        await task
        return elapsed

    try:
        elapsed = asyncio.run(run())
        events = len(EventFeed(History(relay.app)).page(0, 10_000_000))
    finally:
        relay.close()
        asyncio.run(delete_stream(nats_url, name))
    return events, events / elapsed


def raw_speed(url: str, nats_url: str, batch: int) -> float:
    """events/s publishing the same payloads with nats-py alone, acks awaited per batch."""
    app = EscrowApplication(env=parse_store_url(url).env)
    try:
        events = EventFeed(History(app)).page(0, 10_000_000)
    finally:
        app.close()
    name, prefix = f"RAW_{uuid.uuid4().hex[:8].upper()}", f"raw{uuid.uuid4().hex[:8]}"
    encode = msgspec.json.Encoder().encode
    messages = [(subject(prefix, e), encode(e), f"escrow:{e['position']}") for e in events]

    async def run() -> float:
        nc = await nats.connect(nats_url)
        js = nc.jetstream(publish_async_max_pending=100_000)
        await js.add_stream(name=name, subjects=[f"{prefix}.>"], storage="file")
        try:
            started = time.perf_counter()
            for i in range(0, len(messages), batch):
                futures = [
                    await js.publish_async(s, payload, headers={MSG_ID: msg_id})
                    for s, payload, msg_id in messages[i : i + batch]
                ]
                await asyncio.gather(*futures)
            return len(messages) / (time.perf_counter() - started)
        finally:
            await js.delete_stream(name)
            await nc.close()

    return asyncio.run(run())


def lag(nats_url: str, rate: float, seconds: float) -> dict[str, float]:
    """Commit-to-ack lag on PostgreSQL under a steady load, in milliseconds."""
    schema = f"bench_{uuid.uuid4().hex[:8]}"
    base = PG.split("?")[0]
    with psycopg.connect(base, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    url = f"{base}?schema={schema}"
    name, prefix = f"LAG_{uuid.uuid4().hex[:8].upper()}", f"lag{uuid.uuid4().hex[:8]}"
    engine = Escrow(url, clock=SystemClock())
    relay = subprocess.Popen(
        [ESCROW, "--store", url, "relay", "--nats", nats_url, "--stream", name, "--prefix", prefix],
        stderr=subprocess.DEVNULL,
    )
    try:
        asyncio.run(_stream_made(nats_url, name))
        time.sleep(0.5)  # the relay listening for commits
        stopping = threading.Event()
        n = 0
        started = time.perf_counter()
        while time.perf_counter() - started < seconds:
            ref = f"L{n}"
            engine.run(
                "create_order",
                dict(order=ref, seller=f"s{n % 50}", buyer=f"b{n % 50}", asset="USDT",
                     amount="100", price="0.92", fiat="EUR", payment_method="sepa"),
            )  # fmt: skip
            engine.run("mark_paid", {"order": ref, "by": f"b{n % 50}"})
            engine.run("release", {"order": ref, "by": f"s{n % 50}"})
            n += 1
            pause = started + n / rate - time.perf_counter()
            if pause > 0:
                stopping.wait(pause)
        head = int(engine.app.recorder.max_notification_id() or 0)
        lags = asyncio.run(_stored_lags(nats_url, name, head))
    finally:
        relay.terminate()
        relay.wait(10)
        engine.close()
        asyncio.run(delete_stream(nats_url, name))
        with psycopg.connect(base, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA {schema} CASCADE")
    return {"p50": round(percentile(lags, 0.5), 1), "p95": round(percentile(lags, 0.95), 1)}


async def _stream_made(nats_url: str, name: str) -> None:
    """Until the relay has connected (it creates its stream then)."""
    nc = await nats.connect(nats_url)
    try:
        for _ in range(300):
            try:
                await nc.jetstream().stream_info(name)
                return
            except nats.js.errors.NotFoundError:
                await asyncio.sleep(0.05)
        raise RuntimeError("the relay did not connect")
    finally:
        await nc.close()


async def _stored_lags(nats_url: str, name: str, head: int) -> list[float]:
    """Per message: the stream's store time minus the event's `at`, once all are in."""
    nc = await nats.connect(nats_url)
    try:
        js = nc.jetstream()
        deadline = time.monotonic() + 60
        while True:
            last = (await js.stream_info(name)).state.last_seq
            msg = await js.get_msg(name, seq=last) if last else None
            if msg is not None and int(json.loads(msg.data or b"{}")["position"]) >= head - 1:
                break
            if time.monotonic() > deadline:
                raise RuntimeError("the relay did not catch up")
            await asyncio.sleep(0.1)
        lags = []
        for seq in range(1, last + 1):
            msg = await js.get_msg(name, seq=seq)
            at = datetime.fromisoformat(json.loads(msg.data or b"{}")["at"])
            assert msg.time is not None
            lags.append((msg.time - at).total_seconds() * 1000)
        return lags
    finally:
        await nc.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--store", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--batch", type=int, default=1000, help="log rows per relay batch")
    parser.add_argument("--nats", default="nats://127.0.0.1:4222")
    parser.add_argument("--rate", type=float, default=20.0, help="lifecycles/s for the lag")
    parser.add_argument("--seconds", type=float, default=20.0, help="how long the load runs")
    parser.add_argument("--rounds", type=int, default=2, help="relay and raw in turns; best kept")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as folder:
        schema = None
        if args.store == "sqlite":
            url = f"sqlite:///{Path(folder) / 'bench.db'}"
        else:
            schema = f"bench_{uuid.uuid4().hex[:8]}"
            with psycopg.connect(PG.split("?")[0], autocommit=True) as conn:
                conn.execute(f"CREATE SCHEMA {schema}")
            url = f"{PG.split('?')[0]}?schema={schema}"
        try:
            app = EscrowApplication(env=parse_store_url(url).env)
            fill(app, args.events)
            app.close()
            relayed = raw = 0.0
            for _ in range(args.rounds):  # in turns: a busy moment slows one round, not a side
                events, speed = relay_speed(url, args.nats, args.batch)
                relayed = max(relayed, speed)
                raw = max(raw, raw_speed(url, args.nats, args.batch))
        finally:
            if schema is not None:
                with psycopg.connect(PG.split("?")[0], autocommit=True) as conn:
                    conn.execute(f"DROP SCHEMA {schema} CASCADE")
    result = {
        "events": events,
        "relay": round(relayed),
        "raw": round(raw),
        "ratio": round(relayed / raw, 2),
        "lag_ms": lag(args.nats, args.rate, args.seconds),
    }
    if args.json:
        print(json.dumps(result))
    else:
        print(f"{events} events: relay {result['relay']}/s, raw nats-py {result['raw']}/s, "
              f"ratio {result['ratio']}; lag p50 {result['lag_ms']['p50']} ms, "
              f"p95 {result['lag_ms']['p95']} ms")  # fmt: skip


if __name__ == "__main__":
    main()
