"""Rebuild speed of the read models against reading the same events raw, on SQLite and
PostgreSQL, with peak memory and (PostgreSQL and SQLite) the runner's commit-to-projected lag.

How the store is filled: `escrow.projections.synthetic.fill` runs order stories through the engine's
own aggregates (same rules, topics and hash chain as commands) and saves a whole wave of orders
per step with `app.save` (one transaction per step, a few hundred events), into a SQLite file.
PostgreSQL receives the very same stored events, copied page by page with the recorder's
`insert_events`. `--keep FILE` keeps that SQLite file to skip generating next time.

Measured, each in a child process of its own (so peak RSS is that activity's alone):
- raw: `select_notifications` in pages of `--batch` plus `mapper.to_domain_event` for every
  event (the decoded read a projector cannot avoid); also reported without decoding;
- rebuild: `Projector.rebuild()` of every read model in the catalog (drop, replay from the
  first event, create indexes), wall time; from 50,000 events on it runs a process per core,
  each over its share of the streams (`escrow.projections.parallel`), so it uses every core where
  the raw read uses one;
- raw read and rebuild in turns, `--rounds` times (3): each figure is its best round, since
  whatever else runs on the machine only ever slows a round down; every round's ratio is in
  the JSON too;
- ratio = rebuild events/s ÷ raw decoded events/s (target ≥ 0.5); peak RSS of the rebuild
  child together with the processes it starts (`escrow.projections.parallel`): their summed VmRSS
  from /proc sampled every 20 ms, or the child's own VmHWM if larger (target ≤ 300 MB);
- lag: `escrow projections run` in a subprocess while a writer commits small batches of
  events (`--lag-rounds` of them, 40); time from `app.save` returning to the tracking table
  showing them (polled every millisecond), median / 95th percentile / max.

    .venv/bin/python scripts/bench_projections.py [--events N] [--rounds N] [--json] [--keep FILE]
        [--lag-rounds N] [--postgres URL]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import psycopg

from escrow.application import EscrowApplication
from escrow.projections.base import Projector
from escrow.projections.catalog import read_models
from escrow.projections.readstore import ReadStore
from escrow.projections.synthetic import START, fill
from escrow.store import parse_store_url

PG_STORE = "postgresql://postgres@127.0.0.1:5432/test?schema=bench_projections"
ESCROW = str(Path(sys.executable).with_name("escrow"))


def log(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def _generate(path: Path, events: int, out: Any) -> None:
    out.send(generate(path, events))


def generate(path: Path, events: int) -> dict[str, Any]:
    app = EscrowApplication(env=parse_store_url(f"sqlite:///{path}").env)
    started = time.perf_counter()
    step = max(events // 20, 1)
    mark = [step]

    def progress(done: int) -> None:
        if done >= mark[0]:
            log(f"  generated {done:,} events")
            mark[0] += step

    made = fill(app, events, progress=progress)
    seconds = time.perf_counter() - started
    app.close()
    return {"events": made, "seconds": round(seconds, 1), "events_per_s": round(made / seconds)}


def drop_schema(url: str, create: bool = False) -> None:
    """Drop the schema of the PostgreSQL store `url` (and make it anew if `create`)."""
    config = parse_store_url(url)
    with psycopg.connect(config.postgres_conninfo or "", autocommit=True) as conn:
        conn.execute(f"DROP SCHEMA IF EXISTS {config.postgres_schema} CASCADE")
        if create:
            conn.execute(f"CREATE SCHEMA {config.postgres_schema}")


def copy_to_postgres(source: Path, url: str, batch: int) -> None:
    drop_schema(url, create=True)
    src = EscrowApplication(env=parse_store_url(f"sqlite:///{source}").env)
    dst = EscrowApplication(env=parse_store_url(url).env)
    start = 0
    while True:
        page = src.recorder.select_notifications(start, batch, inclusive_of_start=False)
        if not page:
            break
        dst.recorder.insert_events(page)
        start = page[-1].id
    src.close()
    dst.close()


# --- measured in children -------------------------------------------------------------------


def _raw(url: str, batch: int, decode: bool, out: Any) -> None:
    app = EscrowApplication(env=parse_store_url(url).env)
    started = time.perf_counter()
    count, start = 0, 0
    while True:
        page = app.recorder.select_notifications(start, batch, inclusive_of_start=False)
        if not page:
            break
        if decode:
            for n in page:
                app.mapper.to_domain_event(n)
        count += len(page)
        start = page[-1].id
    seconds = time.perf_counter() - started
    out.send((count, seconds, peak_rss_kb()))


def peak_rss_kb() -> int:
    """This process's peak resident set (VmHWM). Not `ru_maxrss`: Linux carries that across
    the exec of a spawned child, so it would report the parent's peak."""
    return _status_kb(os.getpid(), "VmHWM") or int(
        resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    )


def _rebuild(url: str, batch: int, out: Any) -> None:
    config = parse_store_url(url)
    app = EscrowApplication(env=config.env)
    read = ReadStore.open(config)
    projector = Projector(app, read, read_models(), batch=batch)
    sampler = TreeRss()
    sampler.start()
    started = time.perf_counter()
    count = projector.rebuild()
    seconds = time.perf_counter() - started
    sampler.stop()
    out.send((count, seconds, max(peak_rss_kb(), sampler.peak_kb)))


class TreeRss(threading.Thread):
    """The largest sum of resident sets of this process and its descendants (a rebuild
    replays shares of the streams in processes of its own), sampled every 20 ms."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.peak_kb = 0
        self._halt = threading.Event()

    def run(self) -> None:
        while not self._halt.wait(0.02):
            self.peak_kb = max(
                self.peak_kb, sum(_status_kb(pid, "VmRSS") for pid in _tree(os.getpid()))
            )

    def stop(self) -> None:
        self._halt.set()
        self.join()


def _tree(pid: int) -> list[int]:
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        return [pid]
    return [pid, *(p for child in children for p in _tree(int(child)))]


def _status_kb(pid: int, field: str) -> int:
    """A size (kB) from /proc/PID/status; 0 if the process ended or has no such field."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(f"{field}:"):
                return int(line.split()[1])
    except OSError:
        pass  # ended between the listing and the read
    return 0


def child(target: Any, *args: Any) -> tuple[int, float, float]:
    ctx = multiprocessing.get_context("spawn")
    parent, out = ctx.Pipe(duplex=False)
    process = ctx.Process(target=target, args=(*args, out))
    process.start()
    count, seconds, rss_kb = parent.recv()
    process.join()
    return count, seconds, rss_kb / 1024


def lag(url: str, rounds: int = 40) -> dict[str, float]:
    """Commit small batches with a bare writer; time until the runner has projected them."""
    runner = subprocess.Popen(
        [ESCROW, "--store", url, "projections", "run", "--quiet", "--poll", "0.2"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    config = parse_store_url(url)
    app = EscrowApplication(env=config.env)
    read = ReadStore.open(config)
    try:
        last = int(app.recorder.max_notification_id() or 0)
        while _slowest(read) < last:  # the runner is up and has nothing left
            time.sleep(0.05)
        lags = []
        for i in range(rounds):
            fill(app, 3, wave=1, seed=i, prefix=f"lag{i}-", start=START)
            committed = time.perf_counter()
            last = int(app.recorder.max_notification_id() or 0)
            while _slowest(read) < last:
                time.sleep(0.001)
            lags.append((time.perf_counter() - committed) * 1000)
            time.sleep(0.02)
    finally:
        runner.terminate()
        runner.wait()
        read.close()
        app.close()
    lags.sort()
    return {
        "p50": round(statistics.median(lags), 1),
        "p95": round(lags[int(len(lags) * 0.95) - 1], 1),
        "max": round(lags[-1], 1),
    }


def _slowest(read: ReadStore) -> int:
    return min(int(p) for (p,) in read.query("SELECT position FROM escrow_tracking"))


def measure(name: str, url: str, batch: int, rounds: int, lag_rounds: int) -> dict[str, Any]:
    """Raw read and rebuild taken in turns, `rounds` times: each figure is its best round
    (the machine's other load only ever slows a round down), the ratio that of the bests;
    every round's own ratio is reported too."""
    raw_s: list[float] = []
    rebuild_s: list[float] = []
    raw_rss = rebuild_rss = 0.0
    count = rebuilt = 0
    for i in range(rounds):
        log(f"{name}: round {i + 1} of {rounds}: raw read (decoded), then rebuild of every model")
        count, seconds, rss = child(_raw, url, batch, True)
        raw_s.append(seconds)
        raw_rss = max(raw_rss, rss)
        rebuilt, seconds, rss = child(_rebuild, url, batch)
        rebuild_s.append(seconds)
        rebuild_rss = max(rebuild_rss, rss)
    log(f"{name}: raw read (not decoded)")
    _, bare_s, _ = child(_raw, url, batch, False)
    log(f"{name}: lag")
    result = {
        "store": name,
        "events": count,
        "rounds": rounds,
        "raw_events_per_s": round(count / min(raw_s)),
        "raw_undecoded_events_per_s": round(count / bare_s),
        "rebuild_events_per_s": round(rebuilt / min(rebuild_s)),
        "rebuild_seconds": round(min(rebuild_s), 1),
        "ratio": round(min(raw_s) / min(rebuild_s) * rebuilt / count, 3),
        "ratio_per_round": [
            round(r / b * rebuilt / count, 3) for r, b in zip(raw_s, rebuild_s, strict=True)
        ],
        "rebuild_peak_rss_mb": round(rebuild_rss, 1),
        "raw_peak_rss_mb": round(raw_rss, 1),
        "lag_ms": lag(url, lag_rounds),
        "cpus": os.cpu_count(),
        "load_average_1m": round(os.getloadavg()[0], 2),
    }
    log(json.dumps(result))
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--batch", type=int, default=5000, help="events per page/transaction")
    parser.add_argument("--stores", default="sqlite,postgresql")
    parser.add_argument("--keep", type=Path, help="reuse (or keep) the generated SQLite store")
    parser.add_argument("--rounds", type=int, default=3, help="raw read and rebuild, in turns")
    parser.add_argument("--lag-rounds", type=int, default=40, help="commits timed for the lag")
    parser.add_argument(
        "--postgres",
        default=PG_STORE,
        metavar="URL",
        help="the PostgreSQL store to measure, with ?schema=NAME: that schema is made anew and "
        f"dropped at the end (default {PG_STORE})",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()
    if (
        "postgresql" in args.stores.split(",")
        and not parse_store_url(args.postgres).postgres_schema
    ):
        parser.error("--postgres needs a ?schema=NAME, dropped and made anew")

    folder = Path(tempfile.mkdtemp(prefix="bench-proj-"))
    source = args.keep or folder / "source.db"
    report: dict[str, Any] = {"events_requested": args.events, "batch": args.batch}
    if not source.exists():
        log(f"generating {args.events:,} events into {source}")
        ctx = multiprocessing.get_context("spawn")
        parent, out = ctx.Pipe(duplex=False)
        process = ctx.Process(target=_generate, args=(source, args.events, out))
        process.start()
        report["generate"] = parent.recv()
        process.join()
    for name in args.stores.split(","):
        if name == "sqlite":
            store = folder / "sqlite.db"
            shutil.copyfile(source, store)
            report[name] = measure(
                name, f"sqlite:///{store}", args.batch, args.rounds, args.lag_rounds
            )
            store.unlink()
        else:
            log("copying the events to PostgreSQL")
            copy_to_postgres(source, args.postgres, args.batch)
            report[name] = measure(name, args.postgres, args.batch, args.rounds, args.lag_rounds)
            drop_schema(args.postgres)
    shutil.rmtree(folder, ignore_errors=True)  # the generated store, unless --keep put it elsewhere
    if args.json:
        print(json.dumps(report))
        return
    for name in args.stores.split(","):
        r = report[name]
        print(
            f"{name:10s} {r['events']:>9,} events  raw {r['raw_events_per_s']:>7,}/s "
            f"(undecoded {r['raw_undecoded_events_per_s']:,}/s)  rebuild "
            f"{r['rebuild_events_per_s']:>7,}/s  ratio {r['ratio']:.2f}  peak RSS "
            f"{r['rebuild_peak_rss_mb']:.0f} MB  lag p50 {r['lag_ms']['p50']} ms "
            f"p95 {r['lag_ms']['p95']} ms"
        )


if __name__ == "__main__":
    main()
