"""Commands/s on one PostgreSQL with 1, 2 and 4 processes, against the same number of processes
of a bare `eventsourcing` application doing the same saves, and of raw `psycopg` durable
single-row commits: all measured in the same run, on fresh schemas, in paired rounds.

Each process runs create_order → mark_paid → release lifecycles of its own orders (three
commands, three saves) through the public API (`Escrow.execute`, read models deferred as in
production, where `escrow projections run` writes them beside). The rate is every process's
commands over the wall time from a common start to the last one's end. The raw commit rate is
the store's ceiling for one durable write per command.

    .venv/bin/python scripts/bench_scale.py [--lifecycles N] [--rounds R] [--processes 1,2,4]
        [--postgres URL] [--json]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import statistics
import sys
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from multiprocessing.synchronize import Barrier
from typing import Any

import psycopg
from bench_engine import PG, Stores, bare_lifecycle  # scripts/ is this script's path
from eventsourcing.application import Application

from escrow.commands import CreateOrder, Escrow, ManualClock, MarkPaid, Release
from escrow.store import parse_store_url

COMMANDS_PER_LIFECYCLE = 3
PAYLOAD = "x" * 300  # about one stored event's size


def engine_worker(url: str, worker: int, lifecycles: int, start: Barrier) -> tuple[float, float]:
    clock = ManualClock(datetime(2026, 1, 1, tzinfo=UTC))
    with Escrow(url, clock=clock) as engine:
        start.wait()
        began = time.time()
        for i in range(lifecycles):
            ref = f"w{worker}-o{i}"
            engine.execute(
                CreateOrder(
                    order=ref,
                    seller=f"s{worker}",
                    buyer=f"b{worker}",
                    asset="USDT",
                    amount=Decimal("500"),
                    price=Decimal("0.92"),
                    fiat="EUR",
                    payment_method="bank_transfer",
                )
            )
            engine.execute(MarkPaid(order=ref, by=f"b{worker}"))
            engine.execute(Release(order=ref, by=f"s{worker}"))
            clock.advance(timedelta(seconds=1))
        return began, time.time()


def baseline_worker(url: str, worker: int, lifecycles: int, start: Barrier) -> tuple[float, float]:
    env = dict(parse_store_url(url).env, CREATE_TABLE="n")  # made before the start
    app = Application[uuid.UUID](env=env)
    try:
        start.wait()
        began = time.time()
        for _ in range(lifecycles):
            bare_lifecycle(app)
        return began, time.time()
    finally:
        app.close()


def raw_worker(url: str, worker: int, lifecycles: int, start: Barrier) -> tuple[float, float]:
    config = parse_store_url(url)
    assert config.postgres_conninfo is not None
    with psycopg.connect(
        config.postgres_conninfo,
        autocommit=True,
        options=f"-c search_path={config.postgres_schema}",
    ) as conn:
        start.wait()
        began = time.time()
        for i in range(lifecycles * COMMANDS_PER_LIFECYCLE):
            conn.execute(
                "INSERT INTO raw_commits (worker, n, payload) VALUES (%s, %s, %s)",
                [worker, i, PAYLOAD],
            )
        return began, time.time()


Worker = Callable[[str, int, int, Barrier], tuple[float, float]]


def _run(worker: int, fn: Worker, url: str, lifecycles: int, start: Barrier, out: Any) -> None:
    out.put(fn(url, worker, lifecycles, start))


def prepare(kind: str, url: str) -> None:
    """The tables exist before the clock starts: no process pays for creating them."""
    if kind == "engine":
        Escrow(url).close()
    elif kind == "baseline":
        Application[uuid.UUID](env=parse_store_url(url).env).close()
    else:
        config = parse_store_url(url)
        assert config.postgres_conninfo is not None
        with psycopg.connect(config.postgres_conninfo, autocommit=True) as conn:
            conn.execute(
                f"CREATE TABLE {config.postgres_schema}.raw_commits "
                "(id BIGSERIAL PRIMARY KEY, worker INT NOT NULL, n INT NOT NULL, payload TEXT)"
            )


WORKERS: dict[str, Worker] = {
    "engine": engine_worker,
    "baseline": baseline_worker,
    "raw_commit": raw_worker,
}


def commands_per_second(kind: str, processes: int, lifecycles: int, stores: Stores) -> float:
    url = stores.url("postgresql")
    prepare(kind, url)
    context = multiprocessing.get_context("spawn")
    start = context.Barrier(processes)
    out = context.Queue()
    running = [
        context.Process(target=_run, args=(w, WORKERS[kind], url, lifecycles, start, out))
        for w in range(processes)
    ]
    for p in running:
        p.start()
    spans = [out.get(timeout=600) for _ in running]
    for p in running:
        p.join()
        if p.exitcode != 0:
            raise SystemExit(f"a {kind} process failed (exit {p.exitcode})")
    seconds = max(end for _, end in spans) - min(began for began, _ in spans)
    return processes * lifecycles * COMMANDS_PER_LIFECYCLE / seconds


def measure(processes: int, lifecycles: int, rounds: int, stores: Stores) -> dict[str, float]:
    """Engine and baseline back to back in alternating order per round, so drift of the
    machine hits both alike; the ratio is taken within each round and its median reported."""
    rates: dict[str, list[float]] = {kind: [] for kind in WORKERS}
    for r in range(rounds):
        order = list(WORKERS) if r % 2 == 0 else list(reversed(WORKERS))
        for kind in order:
            rates[kind].append(commands_per_second(kind, processes, lifecycles, stores))
    ratios = [e / b for e, b in zip(rates["engine"], rates["baseline"], strict=True)]
    return {
        "engine": round(statistics.median(rates["engine"]), 1),
        "baseline": round(statistics.median(rates["baseline"]), 1),
        "ratio": round(statistics.median(ratios), 3),
        "raw_commit": round(statistics.median(rates["raw_commit"]), 1),
        "engine_to_raw_commit": round(
            statistics.median(rates["engine"]) / statistics.median(rates["raw_commit"]), 3
        ),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--lifecycles", type=int, default=300, help="lifecycles per process")
    parser.add_argument("--rounds", type=int, default=3, help="paired rounds (median kept)")
    parser.add_argument("--processes", default="1,2,4", help="process counts to measure")
    parser.add_argument(
        "--postgres",
        default=PG,
        metavar="URL",
        help="PostgreSQL server: a fresh schema per run, dropped afterwards",
    )
    parser.add_argument("--json", action="store_true", help="one JSON object on stdout")
    args = parser.parse_args()
    stores = Stores(args.postgres)
    results: dict[str, dict[str, float]] = {}
    try:
        for n in (int(p) for p in args.processes.split(",")):
            results[str(n)] = measure(n, args.lifecycles, args.rounds, stores)
            if not args.json:
                print(f"{n} process(es): {results[str(n)]}", file=sys.stderr)
    finally:
        stores.close()
    if args.json:
        print(json.dumps(results))
    else:
        for n, r in results.items():
            print(
                f"{n}: engine {r['engine']:,.0f}/s, baseline {r['baseline']:,.0f}/s, "
                f"ratio {r['ratio']:.2f}, raw commits {r['raw_commit']:,.0f}/s"
            )


if __name__ == "__main__":
    main()
