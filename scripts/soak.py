"""Many processes on one PostgreSQL schema, killed and restarted, and proof that nothing was lost.

Worker processes drive seeded order lifecycles (appeals, refunds, cancellations, expiries,
payment reversals with their clawbacks, complaints) through the public API with a `command_id` on every command, each writing a journal of what it
sent and what was answered (fsynced before and after every command). One process calls `tick`
on a schedule; `escrow projections run` follows the log beside them, and `escrow relay`
publishes it to NATS JetStream. During the run workers are killed with SIGKILL at random
moments and restarted (a restarted worker re-sends the command it had sent without an answer,
with the same id), the projection runner and the relay likewise, and PostgreSQL is restarted
once. Then the kills stop, every worker finishes its plan, and the
store is checked:

- every command acknowledged as done has its receipt, and every event a command recorded
  belongs to exactly one receipt (`lost`, `duplicated`);
- a command acknowledged as refused left no receipt; a re-sent one was answered as a replay
  of the first outcome or, when the first never committed, as its first outcome;
- `escrow audit verify` is clean; the read models equal a fresh rebuild;
- the relay's stream holds every event of the log once, in log order.

    .venv/bin/python scripts/soak.py [--workers 2] [--commands 600] [--seconds 60]
        [--postgres URL] [--no-store-restart] [--seed 1] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
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

import nats
import psycopg

from escrow.commands import Escrow, EscrowError, Policy, StoreError
from escrow.commands.audit.history import History, kind_of
from escrow.commands.audit.verify import verify_store
from escrow.commands.events import EventFeed
from escrow.commands.receipts import Receipt
from escrow.commands.relay.relay import status_of
from escrow.commands.staffing import appoint
from escrow.projections.catalog import read_models
from escrow.store import parse_store_url

PG = "postgresql://postgres@127.0.0.1:5432/test"
AGENTS = ("carol", "dave")
SUPERVISOR = "sam"  # handles complaints; never the agent who resolved the appeal (E3)
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


def reversed_payment(ref: str, seller: str, buyer: str, agent: str) -> list[Step]:
    """C6, K1-K2: the buyer's payment reversed after release; the buyer (a fresh one: S4 ends
    its trading) owes the crypto back, recovered in two parts, one after the resolution."""
    appeal = f"{ref}-a"
    buyer = f"{ref}-buyer"
    return [
        *completed(ref, seller, buyer, agent),
        (
            "open_appeal",
            {"order": ref, "by": seller, "reason": "payment_reversed", "appeal": appeal},
        ),
        ("start_review", {"appeal": appeal, "by": agent}),
        ("confirm_reversal", {"appeal": appeal, "by": agent, "amount": "100"}),
        ("record_recovery", {"appeal": appeal, "by": agent, "amount": "40"}),
        ("resolve_appeal", {"appeal": appeal, "by": agent}),
        ("record_recovery", {"appeal": appeal, "by": agent, "amount": "60"}),
    ]


def complained(ref: str, seller: str, buyer: str, agent: str) -> list[Step]:
    """E1-E4: the seller disputes a release decided by CS; a supervisor reviews it."""
    complaint = f"{ref}-c"
    statement = "the buyer never paid in full"
    return [
        *appeal_released(ref, seller, buyer, agent),
        (
            "file_complaint",
            {"complaint": complaint, "appeal": f"{ref}-a", "by": seller, "statement": statement},
        ),
        ("start_complaint_review", {"complaint": complaint, "by": agent}),  # refused: E3
        ("start_complaint_review", {"complaint": complaint, "by": SUPERVISOR}),
        ("decide_complaint", {"complaint": complaint, "by": SUPERVISOR, "decision": "upheld"}),
    ]


STORIES: list[tuple[Callable[[str, str, str, str], list[Step]], int]] = [
    (completed, 45),
    (cancelled, 10),
    (expired, 5),
    (appeal_released, 15),
    (refunded, 13),
    (reversed_payment, 6),
    (complained, 6),
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
                except StoreError as fault:  # the store is away (restart): same id again
                    print(f"worker {worker}: {fault}, sending again", file=sys.stderr)
                    again = True
                    time.sleep(0.5)
                    continue
                except EscrowError as refusal:
                    if refusal.code == "validation_error" and "command_id" in refusal.message:
                        raise
                    note({"ack": index, "ok": False, "code": refusal.code, "resent": again})
                    break
                note({"ack": index, "ok": True, "replayed": outcome.replayed, "resent": again})
                break
        engine.close()


def _staffed(engine: Escrow) -> Escrow:
    """The agents appointed in the store (idempotent: every process opening it asks)."""
    appoint(engine, AGENTS, [SUPERVISOR])
    return engine


def _open(url: str) -> Escrow:
    while True:
        try:
            return _staffed(Escrow(url, policy=POLICY))
        except StoreError:  # the store is restarting
            time.sleep(0.5)


def tick_forever(url: str) -> None:
    engine = _open(url)
    while True:
        try:
            engine.tick()
        except StoreError as fault:  # the store is away: the next tick fires what is due
            print(f"tick: {fault}", file=sys.stderr)
        time.sleep(0.5)


def _spawn(*args: str, log: Path | None = None) -> subprocess.Popen[bytes]:
    err = log.open("ab") if log is not None else subprocess.DEVNULL
    return subprocess.Popen([sys.executable, *args], stdout=subprocess.DEVNULL, stderr=err)


def _runner(url: str) -> subprocess.Popen[bytes]:
    escrow = Path(sys.executable).with_name("escrow")
    return subprocess.Popen(
        [str(escrow), "--store", url, "projections", "run"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def _relay(url: str, nats_url: str, stream: str) -> subprocess.Popen[bytes]:
    escrow = Path(sys.executable).with_name("escrow")
    command = [str(escrow), "--store", url, "relay", "--nats", nats_url, "--stream", stream]
    return subprocess.Popen(
        [*command, "--prefix", stream.lower(), "--poll", "0.2"],
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
    engine = _staffed(Escrow(url, policy=POLICY))
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


def relay_proof(url: str, nats_url: str, stream: str) -> dict[str, int]:
    """Once the relay caught up: every event of the log in the stream once, in log order."""
    deadline = time.monotonic() + 120
    while status_of(url, stream).lag and time.monotonic() < deadline:
        time.sleep(0.2)
    with History.open(url) as history:
        expected = [e["position"] for e in EventFeed(history).page(0, 10_000_000)]
    got = asyncio.run(_stream_positions(nats_url, stream))
    return {
        "events": len(got),
        "missing": len(set(expected) - set(got)),
        "duplicated": len(got) - len(set(got)),
        "out_of_order": int(got != sorted(got)),
    }


async def _stream_positions(nats_url: str, stream: str) -> list[int]:
    nc = await nats.connect(nats_url)
    try:
        js = nc.jetstream()
        last = (await js.stream_info(stream)).state.last_seq
        positions = []
        for seq in range(1, last + 1):
            msg = await js.get_msg(stream, seq=seq)
            positions.append(int(json.loads(msg.data)["position"]))
        await js.delete_stream(stream)
        return positions
    finally:
        await nc.close()


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
            if kind == "trader" and refs[key] in (*AGENTS, SUPERVISOR):
                continue  # the appointments each process makes as it opens (_staffed)
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
                log=journals / f"w{w}.log",
            )  # fmt: skip

        workers = {w: worker(w) for w in range(args.workers)}
        born = dict.fromkeys(workers, time.monotonic())
        ticker = _spawn(__file__, "--tick", "--url", schema.url)
        runner = _runner(schema.url)
        stream = f"SOAK_{uuid.uuid4().hex[:8].upper()}"
        relay = _relay(schema.url, args.nats, stream) if args.nats else None
        kills = store_restarts = 0
        # Once a fifth of the commands are answered: the workers are busy, however fast.
        restart_after = per_worker * args.workers // 5 if args.store_restart else None
        deadline = started + args.seconds
        for _ in _every(rng, deadline):
            if restart_after is not None and _answered(journals) >= restart_after:
                restart_postgres()
                store_restarts += 1
                restart_after = None
            if all(p.poll() is not None for p in workers.values()):
                break
            if rng.random() < 0.1:
                runner.send_signal(signal.SIGKILL)
                runner.wait()
                runner = _runner(schema.url)
                kills += 1
                continue
            if relay is not None and rng.random() < 0.15:
                relay.send_signal(signal.SIGKILL)
                relay.wait()
                relay = _relay(schema.url, args.nats, stream)
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
                said = (journals / f"w{w}.log").read_text().strip().splitlines()[-1:]
                raise SystemExit(f"worker {w} failed (exit {p.returncode}): {' '.join(said)}")
        survived = {"tick": ticker.poll() is None, "projections run": runner.poll() is None}
        ticker.send_signal(signal.SIGTERM)  # the log stops growing: the relay can catch up
        ticker.wait()
        if relay is not None:
            survived["relay"] = relay.poll() is None
            relayed = relay_proof(schema.url, args.nats, stream)
        for process in (runner, *([relay] if relay is not None else [])):
            process.send_signal(signal.SIGTERM)
            process.wait()
        proof = prove(schema.url, run, args.workers, journals)
        if relay is not None:
            proof["relay"] = relayed
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


def _answered(journals: Path) -> int:
    return sum(
        sum(1 for line in journal_lines(path) if "ack" in line)
        for path in journals.glob("w*.jsonl")
    )


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
    parser.add_argument(
        "--nats",
        default="nats://127.0.0.1:4222",
        metavar="URL",
        help="JetStream server the relay publishes to (a stream of its own, deleted after); "
        "'' for no relay",
    )
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
