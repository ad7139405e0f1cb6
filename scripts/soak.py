"""Many processes on one PostgreSQL schema, killed and restarted, and proof that nothing was lost.

Worker processes drive seeded order lifecycles (appeals, refunds, cancellations, expiries)
through the public API with a `command_id` on every command, each writing a journal of what it
sent and what was answered (fsynced before and after every command). One process calls `tick`
on a schedule; `escrow projections run` follows the log beside them. During the run workers
are killed with SIGKILL at random moments and restarted (a restarted worker re-sends the
command it had sent without an answer, with the same id), the projection runner likewise, and
PostgreSQL is restarted once. Then the kills stop, every worker finishes its plan, and the
store is checked:

- every command acknowledged as done has its receipt, and every event a command recorded
  belongs to exactly one receipt (`lost`, `duplicated`);
- a command acknowledged as refused left no receipt; a re-sent one was answered as a replay
  of the first outcome or, when the first never committed, as its first outcome;
- `escrow audit verify` is clean; the read models equal a fresh rebuild.

    .venv/bin/python scripts/soak.py [--workers 2] [--commands 600] [--seconds 60]
        [--postgres URL] [--no-store-restart] [--seed 1] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg

from escrow.commands import Escrow, EscrowError, Policy
from escrow.commands.audit.history import History, kind_of
from escrow.commands.audit.verify import verify_store
from escrow.commands.receipts import Receipt
from escrow.projections.catalog import read_models
from escrow.store import parse_store_url

PG = "postgresql://postgres@127.0.0.1:5432/test"
AGENTS = ("carol", "dave")
POLICY = Policy(payment_window="3s")  # unpaid orders expire within the run, fired by `tick`
SYSTEM = "system"

Step = tuple[str, dict[str, Any]]


# --- what a worker sends ------------------------------------------------------------------


def _order(ref: str, seller: str, buyer: str) -> Step:
    return (
        "create_order",
        {
            "order": ref,
            "seller": seller,
            "buyer": buyer,
            "asset": "USDT",
            "amount": "100",
            "price": "1",
            "fiat": "EUR",
            "payment_method": "sepa",
        },
    )


def completed(ref: str, seller: str, buyer: str, agent: str) -> list[Step]:
    return [
        _order(ref, seller, buyer),
        ("mark_paid", {"order": ref, "by": buyer}),
        ("release", {"order": ref, "by": seller}),
    ]


def cancelled(ref: str, seller: str, buyer: str, agent: str) -> list[Step]:
    return [_order(ref, seller, buyer), ("cancel_order", {"order": ref, "by": buyer})]


def expired(ref: str, seller: str, buyer: str, agent: str) -> list[Step]:
    return [_order(ref, seller, buyer)]  # `tick` cancels it once its 3 s are up (O3)


def appeal_released(ref: str, seller: str, buyer: str, agent: str) -> list[Step]:
    appeal = f"{ref}-a"
    return [
        _order(ref, seller, buyer),
        ("mark_paid", {"order": ref, "by": buyer}),
        ("release", {"order": ref, "by": buyer}),  # refused: only the seller releases (O6)
        (
            "open_appeal",
            {"order": ref, "by": buyer, "reason": "seller_not_releasing", "appeal": appeal},
        ),
        ("release", {"order": ref, "by": seller}),  # refused while the appeal is open (A5)
        ("add_evidence", {"appeal": appeal, "by": buyer, "description": "bank statement"}),
        ("start_review", {"appeal": appeal, "by": agent}),
        ("resolve_appeal", {"appeal": appeal, "by": agent, "outcome": "release"}),
    ]


def refunded(ref: str, seller: str, buyer: str, agent: str) -> list[Step]:
    appeal = f"{ref}-a"
    return [
        _order(ref, seller, buyer),
        ("mark_paid", {"order": ref, "by": buyer}),
        ("cancel_order", {"order": ref, "by": buyer}),
        (
            "open_appeal",
            {"order": ref, "by": buyer, "reason": "cancelled_after_payment", "appeal": appeal},
        ),
        ("start_review", {"appeal": appeal, "by": agent}),
        ("request_refund", {"appeal": appeal, "by": agent, "amount": "100"}),
        ("report_refund", {"appeal": appeal, "by": seller, "amount": "100", "reference": "tx"}),
        ("confirm_refund", {"appeal": appeal, "by": agent}),
        ("resolve_appeal", {"appeal": appeal, "by": agent}),
    ]


STORIES: list[tuple[Callable[[str, str, str, str], list[Step]], int]] = [
    (completed, 50),
    (cancelled, 10),
    (expired, 5),
    (appeal_released, 20),
    (refunded, 15),
]


def plan(run: str, worker: int, commands: int, seed: int) -> list[Step]:
    """The same commands for the same seed, so a restarted worker knows what it was doing."""
    rng = random.Random(f"{seed}:{worker}")
    steps: list[Step] = []
    n = 0
    while len(steps) < commands:
        story = rng.choices([s for s, _ in STORIES], [w for _, w in STORIES])[0]
        seller, buyer = f"w{worker}s{rng.randrange(4)}", f"w{worker}b{rng.randrange(4)}"
        steps += story(f"{run}-w{worker}-o{n}", seller, buyer, rng.choice(AGENTS))
        n += 1
    return steps[:commands]


def command_id(run: str, worker: int, index: int) -> str:
    return f"{run}-w{worker}-c{index}"


# --- the processes ------------------------------------------------------------------------


def journal_lines(path: Path) -> list[dict[str, Any]]:
    """A line cut short by a kill is the last one and carries nothing yet answered."""
    if not path.exists():
        return []
    lines = []
    for text in path.read_text().splitlines():
        try:
            lines.append(json.loads(text))
        except json.JSONDecodeError:
            break
    return lines


def work(url: str, run: str, worker: int, commands: int, seed: int, journal: Path) -> None:
    steps = plan(run, worker, commands, seed)
    lines = journal_lines(journal)
    answered = {line["ack"] for line in lines if "ack" in line}
    sent = {line["sent"] for line in lines if "sent" in line}
    start = max(answered | sent, default=-1) + 1
    pending = sorted(sent - answered)  # sent before a kill, answer unknown: send again
    with journal.open("a") as out:

        def note(entry: dict[str, Any]) -> None:
            out.write(json.dumps(entry) + "\n")
            out.flush()
            os.fsync(out.fileno())

        engine = _open(url)
        for index in [*pending, *range(start, len(steps))]:
            name, fields = steps[index]
            again = index in sent
            if not again:
                note({"sent": index})
            while True:
                try:
                    outcome = engine.run(
                        name, {**fields, "command_id": command_id(run, worker, index)}
                    )
                except EscrowError as refusal:
                    if refusal.code == "validation_error" and "command_id" in refusal.message:
                        raise
                    note({"ack": index, "ok": False, "code": refusal.code, "resent": again})
                    break
                except Exception as fault:  # the store is away (restart): same id again
                    print(
                        f"worker {worker}: {type(fault).__name__}, sending again", file=sys.stderr
                    )
                    again = True
                    time.sleep(0.5)
                    continue
                note({"ack": index, "ok": True, "replayed": outcome.replayed, "resent": again})
                break
        engine.close()


def _open(url: str) -> Escrow:
    while True:
        try:
            return Escrow(url, policy=POLICY, agents=AGENTS)
        except EscrowError:
            raise
        except Exception:  # the store is restarting
            time.sleep(0.5)


def tick_forever(url: str) -> None:
    engine = _open(url)
    while True:
        try:
            engine.tick()
        except Exception as fault:  # the store is away: the next tick fires what is due
            print(f"tick: {type(fault).__name__}", file=sys.stderr)
        time.sleep(0.5)


def _spawn(*args: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, *args], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )


def _runner(url: str) -> subprocess.Popen[bytes]:
    escrow = Path(sys.executable).with_name("escrow")
    return subprocess.Popen(
        [str(escrow), "--store", url, "projections", "run"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def restart_postgres() -> None:
    version = sorted(os.listdir("/etc/postgresql"))[-1]
    subprocess.run(
        ["pg_ctlcluster", "--skip-systemctl-redirect", version, "main", "restart"],
        check=True,
        capture_output=True,
    )


# --- the proof ----------------------------------------------------------------------------


def prove(url: str, run: str, workers: int, journals: Path) -> dict[str, Any]:
    acks = {
        (w, line["ack"]): line
        for w in range(workers)
        for line in journal_lines(journals / f"w{w}.jsonl")
        if "ack" in line
    }
    engine = Escrow(url, policy=POLICY, agents=AGENTS)
    try:
        unit = engine.runner.unit(engine.clock.now())
        lost = duplicated = 0
        claimed: Counter[tuple[str, str, int]] = Counter()
        for (w, index), line in acks.items():
            receipt = unit.find(Receipt, command_id(run, w, index))
            if line["ok"] != (receipt is not None):
                lost += 1  # done without a record, or refused yet recorded
            elif receipt is not None:
                claimed.update((r["stream"], r["ref"], r["version"]) for r in receipt.recorded)
        duplicated += sum(n - 1 for n in claimed.values() if n > 1)
        for key in _command_events(engine):
            if key not in claimed:
                duplicated += 1  # a command's event that no receipt accounts for
            claimed.pop(key, None)
        lost += len(claimed)  # a receipt naming an event the log does not hold
        engine.catch_up()
        live = _tables(engine)
        engine.projector.rebuild()
        mismatches = sum(live[t] != rows for t, rows in _tables(engine).items())
    finally:
        engine.close()
    report = verify_store(url)
    verdict = (
        "clean" if report.clean else "; ".join(f.as_json()["message"] for f in report.findings[:3])
    )
    resent = [line for line in acks.values() if line["resent"]]
    return {
        "acknowledged": len(acks),
        "replayed": sum(1 for line in resent if line.get("replayed")),
        "resent": len(resent),
        "lost": lost,
        "duplicated": duplicated,
        "verify": verdict,
        "read_model_mismatches": mismatches,
    }


def _command_events(engine: Escrow) -> list[tuple[str, str, int]]:
    """Every event a caller's command recorded (deadlines fired by the system excluded)."""
    found: list[tuple[str, str, int]] = []
    refs: dict[str, str] = {}
    with History(engine.app) as history:
        for _, key, version, topic, state in history.rows():
            fields = history.decode(state)
            if version == 1 and "ref" in fields:
                refs[key] = fields["ref"]
            kind = kind_of(topic)
            if kind == Receipt.KIND or fields.get("actor") == SYSTEM:
                continue
            found.append((kind, refs[key], version))
    return found


def _tables(engine: Escrow) -> dict[str, list[tuple[Any, ...]]]:
    return {
        table: sorted(engine.read.query(f"SELECT * FROM {table}"), key=repr)
        for model in read_models()
        for table in model.tables
    }


# --- the run ------------------------------------------------------------------------------


class Schema:
    def __init__(self, server: str) -> None:
        config = parse_store_url(server)
        self.conninfo = config.postgres_conninfo or server
        self.name = f"{config.postgres_schema or 'soak'}_{uuid.uuid4().hex[:8]}"
        self.url = f"{server.split('?')[0]}?schema={self.name}"

    def __enter__(self) -> Schema:
        with psycopg.connect(self.conninfo, autocommit=True) as conn:
            conn.execute(f"CREATE SCHEMA {self.name}")
        return self

    def __exit__(self, *exc: object) -> None:
        with psycopg.connect(self.conninfo, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA IF EXISTS {self.name} CASCADE")


def soak(args: argparse.Namespace) -> dict[str, Any]:
    started = time.monotonic()
    rng = random.Random(args.seed)
    per_worker = args.commands // args.workers
    with Schema(args.postgres) as schema, tempfile.TemporaryDirectory() as tmp:
        journals = Path(tmp)
        run = schema.name
        Escrow(schema.url).close()  # the tables, before anyone races to use them

        def worker(w: int) -> subprocess.Popen[bytes]:
            return _spawn(
                __file__,
                "--worker", str(w),
                "--url", schema.url,
                "--run", run,
                "--commands", str(per_worker),
                "--seed", str(args.seed),
                "--journal", str(journals / f"w{w}.jsonl"),
            )  # fmt: skip

        workers = {w: worker(w) for w in range(args.workers)}
        born = dict.fromkeys(workers, time.monotonic())
        ticker = _spawn(__file__, "--tick", "--url", schema.url)
        runner = _runner(schema.url)
        kills = store_restarts = 0
        restart_at = started + args.seconds / 3 if args.store_restart else None
        deadline = started + args.seconds
        for _ in _every(rng, deadline):
            if restart_at is not None and time.monotonic() >= restart_at:
                restart_postgres()
                store_restarts += 1
                restart_at = None
            if all(p.poll() is not None for p in workers.values()):
                break
            if rng.random() < 0.2:
                runner.send_signal(signal.SIGKILL)
                runner.wait()
                runner = _runner(schema.url)
                kills += 1
                continue
            # A worker busy with its plan (one still opening its engine is not yet sending).
            busy = [
                w for w, p in workers.items() if p.poll() is None and time.monotonic() - born[w] > 1
            ]
            if busy:
                victim = rng.choice(busy)
                workers[victim].send_signal(signal.SIGKILL)
                workers[victim].wait()
                workers[victim], born[victim] = worker(victim), time.monotonic()
                kills += 1
        for w, p in workers.items():  # no more kills: every plan runs to its end
            if p.wait(timeout=args.seconds * 10) != 0:
                raise SystemExit(f"worker {w} failed (exit {p.returncode})")
        survived = {"tick": ticker.poll() is None, "projections run": runner.poll() is None}
        for process in (ticker, runner):
            process.send_signal(signal.SIGTERM)
            process.wait()
        proof = prove(schema.url, run, args.workers, journals)
        died = [name for name, alive in survived.items() if not alive]
        if died:  # they must ride out the store restart and the kills of their neighbours
            proof["verify"] = f"{', '.join(died)} died during the run; {proof['verify']}"
    return {
        "workers": args.workers,
        "commands": per_worker * args.workers,
        **proof,
        "kills": kills,
        "store_restarts": store_restarts,
        "seconds": round(time.monotonic() - started, 1),
    }


def _every(rng: random.Random, deadline: float) -> Iterator[None]:
    """A moment for mischief, at random intervals, until the deadline."""
    while time.monotonic() < deadline:
        time.sleep(rng.uniform(0.3, 1.5))
        yield None


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--commands", type=int, default=600, help="commands over all workers")
    parser.add_argument("--seconds", type=float, default=60, help="how long the kills go on")
    parser.add_argument("--postgres", default=PG, metavar="URL", help="a fresh schema is made")
    parser.add_argument("--no-store-restart", dest="store_restart", action="store_false")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--json", action="store_true", help="one JSON object on stdout")
    # The processes the run starts:
    parser.add_argument("--worker", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--tick", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    parser.add_argument("--run", help=argparse.SUPPRESS)
    parser.add_argument("--journal", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.tick:
        tick_forever(args.url)
    elif args.worker is not None:
        work(args.url, args.run, args.worker, args.commands, args.seed, args.journal)
    else:
        result = soak(args)
        print(json.dumps(result) if args.json else json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
