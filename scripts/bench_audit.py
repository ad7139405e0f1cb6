"""`escrow audit verify` against the raw read speed of the same events, measured in one run.

The store is filled fast by building the aggregates directly (the same domain methods the
command handlers call: rulebook guards, hash chain) and saving them with `app.save(...)` in
batches of a few hundred; no read model is kept. Lifecycles mix what a busy exchange records:
released orders, expired and cancelled ones, B1 appeals resolved with a release, C4 appeals with
the buyer's S2 and its expiry, B2 refund refusals with the seller's S1, and idempotency receipts.

raw    = every page of `recorder.select_notifications` (the library's own reader), nothing else
verify = `verify_store` on the same store: decode, hash chain, invariants, per-stream state,
         in a fresh process (its peak RSS counts that process and its workers)

    .venv/bin/python scripts/bench_audit.py [--events N] [--stores sqlite,postgresql]
                                            [--jobs J] [--json] [--store URL [--fill]]
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg

from escrow.actors import SYSTEM_ACTOR, Actor
from escrow.appeal import Appeal
from escrow.application import EscrowApplication
from escrow.commands.audit.history import History
from escrow.commands.audit.verify import default_jobs, verify_store
from escrow.commands.receipts import Receipt
from escrow.log import PAGE
from escrow.order import Order
from escrow.policy import Policy
from escrow.recording import EscrowAggregate
from escrow.store import parse_store_url
from escrow.trader import Trader

PG = "postgresql://postgres@127.0.0.1:5432/test"
START = datetime(2026, 1, 1, tzinfo=UTC)
ASSETS = ("USDT", "BTC", "ETH")
AGENT = Actor("agent-ana", is_agent=True)


def minutes(n: float) -> timedelta:
    return timedelta(minutes=n)


def lifecycle(i: int, t: datetime, rnd: random.Random, policy: Policy) -> list[EscrowAggregate]:
    """One order's whole story, recorded by the domain methods; returns what changed."""
    seller, buyer = Actor(f"seller-{i}"), Actor(f"buyer-{i}")
    asset = rnd.choice(ASSETS)
    amount = Decimal(rnd.randint(1, 10**8)) / 10**4
    price = Decimal(rnd.randint(80, 120)) / 100
    order = Order.create(
        ref=f"P2P-{i}",
        seller=seller.name,
        buyer=buyer.name,
        asset=asset,
        amount=amount,
        price=price,
        fiat="EUR",
        payment_method="bank_transfer",
        instant=False,
        reference_price=price,
        payment_window=policy.payment_window,
        policy=policy,
        at=t,
    )
    changed: list[EscrowAggregate] = [order]
    r = rnd.random()
    if r < 0.15:
        order.expire(SYSTEM_ACTOR, t + policy.payment_window)
        return changed
    order.mark_paid(buyer, None, t + minutes(3))
    if r < 0.55:
        order.release(seller, t + minutes(6))
    elif r < 0.65:
        order.cancel(buyer, t + minutes(5))
    elif r < 0.82:  # B1: the seller does not release; CS releases
        appeal = Appeal.open(
            ref=f"AP-{i}",
            order=order,
            by=buyer,
            reason="seller_not_releasing",
            description="paid, no release",
            policy=policy,
            at=t + minutes(40),
        )
        order.appeal_opened(appeal.ref, buyer, appeal.issue, appeal.reason, t + minutes(40))
        appeal.add_evidence(buyer, "bank receipt", [f"tx-{i}"], order, t + minutes(41))
        appeal.start_review(AGENT, order, t + minutes(60))
        outcome = appeal.resolve(AGENT, "release", order, t + minutes(90))
        order.appeal_resolved(appeal.ref, appeal.issue, outcome, AGENT, t + minutes(90))
        changed.append(appeal)
    elif r < 0.93:  # C4: the buyer is suspended (S2); the window closes; CS cancels
        opened = t + minutes(30)
        appeal = Appeal.open(
            ref=f"AP-{i}",
            order=order,
            by=seller,
            reason="bank_account_frozen",
            description=None,
            policy=policy,
            at=opened,
        )
        order.appeal_opened(appeal.ref, seller, appeal.issue, appeal.reason, opened)
        trader = Trader.register(buyer.name, opened)
        trader.sanction(
            "trading_suspension_24h",
            by=seller,
            at=opened,
            policy=policy,
            rule="C4",
            appeal=appeal.ref,
        )
        closed = opened + policy.freeze_proof_window
        appeal.close_freeze_window(SYSTEM_ACTOR, order, closed)
        trader.expire_due(SYSTEM_ACTOR, opened + policy.temporary_suspension)
        outcome = appeal.resolve(AGENT, "cancel", order, closed + minutes(30))
        order.appeal_resolved(appeal.ref, appeal.issue, outcome, AGENT, closed + minutes(30))
        changed += [appeal, trader]
    else:  # B2: cancelled after paying; the seller refuses the refund (S1)
        order.cancel(buyer, t + minutes(5))
        appeal = Appeal.open(
            ref=f"AP-{i}",
            order=order,
            by=buyer,
            reason="cancelled_after_payment",
            description="cancelled by mistake",
            policy=policy,
            at=t + minutes(20),
        )
        order.appeal_opened(appeal.ref, buyer, appeal.issue, appeal.reason, t + minutes(20))
        appeal.start_review(AGENT, order, t + minutes(30))
        appeal.request_refund(AGENT, order.fiat_amount, None, order, Decimal(0), t + minutes(31))
        refused = t + minutes(50)
        appeal.refuse_refund(seller, order, refused)
        trader = Trader.register(seller.name, refused)
        trader.sanction(
            "p2p_suspension", by=seller, at=refused, policy=policy, rule="S1", appeal=appeal.ref
        )
        outcome = appeal.resolve(AGENT, None, order, t + minutes(70))
        order.appeal_resolved(appeal.ref, appeal.issue, outcome, AGENT, t + minutes(70))
        changed += [appeal, trader]
    if rnd.random() < 0.1:
        changed.append(Receipt.issue(f"cmd-{i}", "create_order", "platform", "x" * 64, [], t))
    return changed


def fill(url: str, events: int, seed: int = 1) -> int:
    """At least `events` events, saved in batches in time order (as the engine records them:
    a log's time never goes back, and verify names a step back); returns how many."""
    app = EscrowApplication(env=parse_store_url(url).env)
    policy, rnd = Policy(), random.Random(seed)
    batch: list[Any] = []
    written = i = 0
    at = START
    try:
        while written < events:
            changed = lifecycle(i, at, rnd, policy)
            batch += [e for a in changed for e in a.collect_events()]
            # The next lifecycle starts after every event so far: a batch sorted by time
            # (stable, so each stream keeps its order) can be saved as it fills.
            at = max(e.timestamp for e in batch) + timedelta(seconds=7)
            if len(batch) >= 2000:
                written += _save_in_time_order(app, batch)
                batch = []
            i += 1
        if batch:
            written += _save_in_time_order(app, batch)
    finally:
        app.close()
    return written


def _save_in_time_order(app: EscrowApplication, events: list[Any]) -> int:
    events.sort(key=lambda e: e.timestamp)
    app.save(*events)
    return len(events)


def raw_read(url: str) -> tuple[int, float]:
    """Page through every notification with the recorder's own reader."""
    app = EscrowApplication(env=dict(parse_store_url(url).env, CREATE_TABLE="n"))
    try:
        started = time.perf_counter()
        count, start = 0, 1
        while True:
            page = app.recorder.select_notifications(start, PAGE)
            if not page:
                break
            count += len(page)
            start = page[-1].id + 1
        return count, time.perf_counter() - started
    finally:
        app.close()


def verify_child(url: str, jobs: int) -> None:
    """Run in a fresh process: the figures printed as one JSON line."""
    started = time.perf_counter()
    report = verify_store(url, jobs=jobs)
    elapsed = time.perf_counter() - started
    print(
        json.dumps(
            {
                "events": report.events,
                "seconds": elapsed,
                "clean": report.clean,
                "violations": len(report.findings) + report.more_findings,
                "peak_rss_mb": round(report.peak_rss_kb / 1024, 1),
            }
        )
    )


def measure(
    backend: str,
    events: int,
    jobs: int | None,
    tmp: Path,
    given: str | None = None,
    fill_given: bool = False,
) -> dict[str, Any]:
    schema = None
    if given is not None:  # an existing store: never dropped, filled only when asked
        url = given
    elif backend == "sqlite":
        url = f"sqlite:///{tmp / (uuid.uuid4().hex + '.db')}"
    else:
        schema = f"bench_audit_{uuid.uuid4().hex[:10]}"
        with psycopg.connect(PG, autocommit=True) as conn:
            conn.execute(f"CREATE SCHEMA {schema}")
        url = f"{PG}?schema={schema}"
    try:
        started = time.perf_counter()
        written = fill(url, events) if given is None or fill_given else 0
        fill_seconds = time.perf_counter() - started
        with History.open(url) as history:
            chosen = jobs or default_jobs(history.count())
        raws: list[float] = []
        verifies: list[dict[str, Any]] = []
        for _ in range(2):  # alternate, keep the best of each: the machine is shared
            count, seconds = raw_read(url)
            raws.append(count / seconds)
            child = subprocess.run(
                [sys.executable, __file__, "--child", url, "--jobs", str(chosen)],
                check=True,
                capture_output=True,
                text=True,
            )
            verifies.append(json.loads(child.stdout.strip().splitlines()[-1]))
        best = min(verifies, key=lambda v: v["seconds"])
        raw = max(raws)
        speed = best["events"] / best["seconds"]
        return {
            "events": count,
            "written": written,
            "fill_seconds": round(fill_seconds, 1),
            "raw_events_per_s": round(raw),
            "verify_events_per_s": round(speed),
            "ratio": round(speed / raw, 3),
            "verify_seconds": round(best["seconds"], 1),
            "jobs": chosen,
            "peak_rss_mb": max(v["peak_rss_mb"] for v in verifies),
            "clean": all(v["clean"] for v in verifies),
        }
    finally:
        if schema is not None:
            with psycopg.connect(PG, autocommit=True) as conn:
                conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--stores", default="sqlite,postgresql")
    parser.add_argument("--jobs", type=int, default=None, help="verify workers (default: auto)")
    parser.add_argument("--json", action="store_true", help="one JSON object on stdout")
    parser.add_argument("--store", help="measure this existing store instead (not filled)")
    parser.add_argument(
        "--fill", action="store_true", help="with --store: fill it with --events events first"
    )
    parser.add_argument("--child", metavar="URL", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.fill and not args.store:
        parser.error("--fill goes with --store")
    if args.child:
        verify_child(args.child, args.jobs or 1)
        return
    results: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix="bench-audit-") as tmp:
        backends = [parse_store_url(args.store).backend] if args.store else args.stores.split(",")
        for backend in backends:
            results[backend] = r = measure(
                backend, args.events, args.jobs, Path(tmp), args.store, args.fill
            )
            if not args.json:
                print(
                    f"{backend:<11} {r['events']:>9} events  raw {r['raw_events_per_s']:>8}/s  "
                    f"verify {r['verify_events_per_s']:>8}/s  ratio {r['ratio']:.2f}  "
                    f"peak {r['peak_rss_mb']} MB  jobs {r['jobs']}  clean {r['clean']}",
                    file=sys.stderr,
                )
    if args.json:
        print(json.dumps(results))


if __name__ == "__main__":
    main()
