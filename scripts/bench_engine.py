"""Engine throughput against a bare `eventsourcing` baseline, measured in the same run.

A lifecycle is create_order → mark_paid → release through the public API (`Escrow.execute`
with pydantic command models: validation, rulebook, sanctions check, hash chain). The baseline
records the same three events with the same saves (create-save, load-change-save twice)
through a bare `eventsourcing` Application on the same kind of store. Both run in paired
rounds on fresh stores so that drift of the machine hits them alike.

The engine is measured twice per round: with its read models deferred (the command path
alone: the five read models are written later, in batches, by whoever reads them; their cost
is `scripts/bench_projections.py`'s) and with them inline, written in every command's own
transaction, as SQLite does by default (`inline` in the JSON).

    .venv/bin/python scripts/bench_engine.py [--lifecycles N] [--rounds R] [--json]
        [--stores memory,sqlite,postgresql] [--postgres URL]
"""

from __future__ import annotations

import argparse
import gc
import json
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg
from eventsourcing.application import Application
from eventsourcing.domain import Aggregate, event

from escrow.clock import ManualClock
from escrow.commands.api import Escrow
from escrow.commands.bootstrap import DEFERRED, INLINE
from escrow.commands.models import CreateOrder, MarkPaid, Release
from escrow.store import parse_store_url

PG = "postgresql://postgres@127.0.0.1:5432/test"


class BareOrder(Aggregate):
    """The same facts as an escrow order, in the library's plainest style."""

    @event("Created")
    def __init__(
        self, seller: str, buyer: str, asset: str, amount: Decimal, price: Decimal
    ) -> None:
        self.seller, self.buyer, self.asset = seller, buyer, asset
        self.amount, self.price = amount, price
        self.state = "awaiting_payment"

    @event("MarkedPaid")
    def mark_paid(self, paid_amount: Decimal) -> None:
        self.paid_amount = paid_amount
        self.state = "paid"

    @event("Released")
    def release(self) -> None:
        self.state = "completed"


def project(aggregate: Any, events: Iterable[Any]) -> Any:
    for e in events:
        aggregate = e.mutate(aggregate)
    return aggregate


class Stores:
    """Fresh stores per round; PostgreSQL schemas and SQLite files are removed afterwards.

    The schemas are made on the server of `postgres`, named after its `?schema=` if it has one,
    so that whoever passed it can tell them apart."""

    def __init__(self, postgres: str = PG) -> None:
        self.tmp = Path(tempfile.mkdtemp(prefix="bench-engine-"))
        self.schemas: list[str] = []
        config = parse_store_url(postgres)
        self.server = postgres.split("?")[0]
        self.conninfo = config.postgres_conninfo or postgres
        self.prefix = config.postgres_schema or "bench"

    def url(self, backend: str) -> str:
        if backend == "memory":
            return "memory:"
        if backend == "sqlite":
            return f"sqlite:///{self.tmp / (uuid.uuid4().hex + '.db')}"
        schema = f"{self.prefix}_{uuid.uuid4().hex[:10]}"
        with psycopg.connect(self.conninfo, autocommit=True) as conn:
            conn.execute(f"CREATE SCHEMA {schema}")
        self.schemas.append(schema)
        return f"{self.server}?schema={schema}"

    def close(self) -> None:
        if self.schemas:  # a run without PostgreSQL needs no server
            with psycopg.connect(self.conninfo, autocommit=True) as conn:
                for schema in self.schemas:
                    conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
        for f in self.tmp.iterdir():
            f.unlink()
        self.tmp.rmdir()


def run_engine(url: str, n: int, read_models: str) -> float:
    clock = ManualClock(datetime(2026, 1, 1, tzinfo=UTC))
    engine = Escrow(url, clock=clock, read_models=read_models)
    try:
        started = time.perf_counter()
        for i in range(n):
            ref = f"o{i}"
            engine.execute(
                CreateOrder(
                    order=ref,
                    seller="alice",
                    buyer="bob",
                    asset="USDT",
                    amount=Decimal("500"),
                    price=Decimal("0.92"),
                    fiat="EUR",
                    payment_method="bank_transfer",
                )
            )
            engine.execute(MarkPaid(order=ref, by="bob"))
            engine.execute(Release(order=ref, by="alice"))
            clock.advance(timedelta(seconds=1))
        return n / (time.perf_counter() - started)
    finally:
        engine.close()


def bare_lifecycle(app: Application[uuid.UUID]) -> None:
    """The baseline's lifecycle: create, pay, release on bare eventsourcing, each step loaded
    from the store and saved, as the engine's commands are."""
    order = BareOrder("alice", "bob", "USDT", Decimal("500"), Decimal("0.92"))
    app.save(order)
    order = app.repository.get(order.id, projector_func=project)
    order.mark_paid(Decimal("460"))
    app.save(order)
    order = app.repository.get(order.id, projector_func=project)
    order.release()
    app.save(order)


def run_baseline(url: str, n: int) -> float:
    app = Application[uuid.UUID](env=parse_store_url(url).env)  # the same store settings
    try:
        started = time.perf_counter()
        for _ in range(n):
            bare_lifecycle(app)
        return n / (time.perf_counter() - started)
    finally:
        app.close()


def measure(backend: str, n: int, rounds: int, stores: Stores) -> dict[str, Any]:
    """Rounds of engine runs (read models deferred, then inline) and one baseline run back
    to back (in alternating order): each ratio is taken within its round, where both met the
    same machine, and the median of those ratios is reported (a shared VM drifts by ±25%
    over seconds)."""
    runs: dict[str, Callable[[str, int], float]] = {
        DEFERRED: lambda url, k: run_engine(url, k, DEFERRED),
        INLINE: lambda url, k: run_engine(url, k, INLINE),
        "baseline": run_baseline,
    }
    results: dict[str, list[float]] = {name: [] for name in runs}
    for r in range(rounds):
        for name in list(runs) if r % 2 == 0 else reversed(runs):
            url = stores.url(backend)
            gc.collect()  # the previous run's garbage is not this run's cost
            results[name].append(runs[name](url, n))

    def figures(mode: str) -> dict[str, float]:
        ratios = [e / b for e, b in zip(results[mode], results["baseline"], strict=True)]
        return {
            "engine": round(statistics.median(results[mode]), 1),
            "ratio": round(statistics.median(ratios), 3),
        }

    engine = figures(DEFERRED)
    return {
        "engine": engine["engine"],
        "baseline": round(statistics.median(results["baseline"]), 1),
        "ratio": engine["ratio"],
        "read_models": DEFERRED,
        INLINE: figures(INLINE),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lifecycles", type=int, default=1000, help="lifecycles per round")
    parser.add_argument("--rounds", type=int, default=5, help="paired rounds (median kept)")
    parser.add_argument("--stores", default="memory,sqlite,postgresql")
    parser.add_argument(
        "--postgres",
        default=PG,
        metavar="URL",
        help="PostgreSQL server: a fresh schema per run, dropped afterwards (its name starts "
        "with the URL's ?schema=, if any)",
    )
    parser.add_argument("--json", action="store_true", help="one JSON object on stdout")
    args = parser.parse_args()
    stores = Stores(args.postgres)
    results: dict[str, dict[str, Any]] = {}
    try:
        for backend in args.stores.split(","):
            n = args.lifecycles * (5 if backend == "memory" else 1)
            results[backend] = r = measure(backend, n, args.rounds, stores)
            if not args.json:
                print(
                    f"{backend:<11} engine {r['engine']:>9.1f}/s   baseline {r['baseline']:>9.1f}/s"
                    f"   ratio {r['ratio']:.3f}   read models inline:"
                    f" {r[INLINE]['engine']:>8.1f}/s   ratio {r[INLINE]['ratio']:.3f}",
                    file=sys.stderr,
                )
    finally:
        stores.close()
    if args.json:
        print(json.dumps(results))


if __name__ == "__main__":
    main()
