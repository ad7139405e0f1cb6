"""Runs one scenario on a fresh store with a clock that moves only on `wait:`.

Each scenario gets a store of its own (a new in-memory store, a new SQLite file next to the one
given, or a new PostgreSQL schema), removed afterwards, so scenarios never see each other's ids
and a run leaves nothing behind. The run stops at the first step that does not do what the file
says, because the steps after it were written for a state the engine never reached.
"""

from __future__ import annotations

import contextlib
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlparse, urlunparse

import psycopg

from escrow.clock import ManualClock
from escrow.commands.api import Escrow
from escrow.commands.scenarios.format import CommandStep, ExpectStep, Scenario, Step, WaitStep
from escrow.errors import EscrowError, NotFound, StoreError
from escrow.projections.deadlines import Deadlines, stamp
from escrow.store import mask, parse_store_url
from escrow.views import OrderView, Outcome, Recorded

DEADLINE_TABLE = Deadlines.tables[0]


class StoreUnavailable(Exception):
    """The store given to run on cannot be prepared (server down, folder missing)."""


# --- results --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Failure:
    """A step that did not do what the scenario says."""

    step: int
    line: int | None
    text: str
    expected: str
    found: str

    def as_dict(self) -> dict[str, Any]:
        return {
            "step": self.step,
            "line": self.line,
            "text": self.text,
            "expected": self.expected,
            "found": self.found,
        }


@dataclass(frozen=True)
class Trace:
    """One step as it ran, with the events it recorded (for `-v`)."""

    step: int
    text: str
    result: str
    events: list[Recorded]

    def as_dict(self) -> dict[str, Any]:
        return {
            "step": self.step,
            "text": self.text,
            "result": self.result,
            "events": [e.model_dump(mode="json") for e in self.events],
        }


@dataclass
class ScenarioResult:
    file: str
    name: str
    rules: tuple[str, ...]
    seconds: float
    steps: int
    steps_run: int
    failure: Failure | None = None
    trace: list[Trace] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return self.failure is None

    def as_dict(self, trace: bool = False) -> dict[str, Any]:
        result: dict[str, Any] = {
            "file": self.file,
            "scenario": self.name,
            "rules": list(self.rules),
            "status": "pass" if self.passed else "fail",
            "seconds": round(self.seconds, 4),
            "steps": self.steps,
            "steps_run": self.steps_run,
            "failure": self.failure.as_dict() if self.failure else None,
        }
        if trace:
            result["trace"] = [t.as_dict() for t in self.trace]
        return result


class _StepFailed(Exception):
    def __init__(self, expected: str, found: str, events: list[Recorded] | None = None) -> None:
        super().__init__(f"expected {expected}; found {found}")
        self.expected = expected
        self.found = found
        self.events = events or []


# --- fresh stores ---------------------------------------------------------------------------


@contextlib.contextmanager
def fresh_store(base: str | None) -> Iterator[str]:
    """A new, empty store derived from `base` (memory when None), removed afterwards."""
    if base is None or base == "memory:":
        yield "memory:"
        return
    config = parse_store_url(base)
    tag = uuid.uuid4().hex[:12]
    if config.backend == "sqlite":
        assert config.sqlite_path is not None
        given = Path(config.sqlite_path)
        if not given.parent.is_dir():
            raise StoreUnavailable(f"no folder {given.parent} for the SQLite store {mask(base)!r}")
        path = given.with_name(f"{given.stem}.scenario-{tag}{given.suffix or '.db'}")
        try:
            yield f"sqlite:///{path}"
        finally:
            for suffix in ("", "-wal", "-shm", "-journal"):
                Path(f"{path}{suffix}").unlink(missing_ok=True)
        return
    assert config.postgres_conninfo is not None
    schema = f"scenario_{tag}"
    try:
        with psycopg.connect(config.postgres_conninfo, autocommit=True) as c:
            c.execute(f'CREATE SCHEMA "{schema}"')
    except psycopg.Error as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise StoreUnavailable(
            f"cannot prepare a schema on {config.shown!r}: {mask(first)}"
        ) from None
    parts = urlparse(base)
    query = [(k, v) for k, v in parse_qsl(parts.query) if k != "schema"]
    query.append(("schema", schema))
    try:
        yield urlunparse(parts._replace(query=urlencode(query)))
    finally:
        with psycopg.connect(config.postgres_conninfo, autocommit=True) as c:
            c.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


# --- time -----------------------------------------------------------------------------------


def advance(engine: Escrow, clock: ManualClock, by: timedelta) -> list[Outcome]:
    """Move the clock by `by`, firing each deadline that falls due at its own due time, as a
    punctual scheduler would: history then shows when each deadline really fell due, and a
    deadline's effects (a cancelled order, an ended sanction) are in place for the next one."""
    target = clock.now() + by
    fired = engine.tick()
    while True:
        engine.projector.catch_up()
        rows = engine.read.query(
            f"SELECT MIN(due_at) FROM {DEADLINE_TABLE} WHERE due_at > ? AND due_at <= ?",
            [stamp(clock.now()), stamp(target)],
        )
        due = rows[0][0] if rows else None
        if due is None:
            break
        clock.set(datetime.fromisoformat(str(due).replace("Z", "+00:00")).astimezone(UTC))
        fired += engine.tick()
    clock.set(target)
    return fired + engine.tick()


# --- running --------------------------------------------------------------------------------


def run_scenario(
    scenario: Scenario, store: str | None = None, fresh: bool = True
) -> ScenarioResult:
    """Run every step on a fresh store derived from `store` (or on `store` itself when
    `fresh` is False and the caller made it fresh); stops at the first step that fails."""
    started = time.perf_counter()
    result = ScenarioResult(
        scenario.file, scenario.name, scenario.rules, 0.0, len(scenario.steps), 0
    )
    place = fresh_store(store) if fresh else contextlib.nullcontext(store or "memory:")
    with place as url:
        clock = ManualClock(scenario.start)
        try:
            engine = Escrow(
                url,
                policy=scenario.policy,
                clock=clock,
                agents=scenario.agents,
                supervisors=scenario.supervisors,
            )
        except StoreError as e:  # a store that cannot be opened says nothing about the rules
            raise StoreUnavailable(f"cannot open the store: {e}") from None
        try:
            for step in scenario.steps:
                result.steps_run += 1
                try:
                    outcome, events = _run_step(engine, clock, step)
                except StoreError as e:  # neither a pass nor a failure of the rules
                    raise StoreUnavailable(f"step {step.number}: {e}") from None
                except _StepFailed as e:
                    result.failure = Failure(step.number, step.line, step.text, e.expected, e.found)
                    result.trace.append(Trace(step.number, step.text, "FAILED", e.events))
                    break
                result.trace.append(Trace(step.number, step.text, outcome, events))
        finally:
            engine.close()
    result.seconds = time.perf_counter() - started
    return result


def _run_step(engine: Escrow, clock: ManualClock, step: Step) -> tuple[str, list[Recorded]]:
    if isinstance(step, WaitStep):
        fired = advance(engine, clock, step.duration)
        return f"clock at {clock.now().isoformat()}", [r for o in fired for r in o.recorded]
    if isinstance(step, ExpectStep):
        _check(engine, step)
        return "as expected", []
    return _command(engine, step)


def _stored(engine: Escrow) -> tuple[int, list[tuple[Any, ...]]]:
    """What a refused command must leave untouched: the event log and the read models."""
    events = int(engine.app.recorder.max_notification_id() or 0)
    positions = engine.read.query("SELECT name, position FROM escrow_tracking ORDER BY name")
    return events, positions


def _command(engine: Escrow, step: CommandStep) -> tuple[str, list[Recorded]]:
    before = _stored(engine) if step.error is not None else None
    try:
        outcome = engine.run(step.command, step.fields)
    except StoreError:
        raise
    except EscrowError as e:
        if step.error is None:
            raise _StepFailed("accepted", f"refused: {e}") from None
        if step.error not in ("any", e.code):
            raise _StepFailed(f"refused with {step.error}", f"refused: {e}") from None
        if _stored(engine) != before:
            raise _StepFailed(
                f"refused with {step.error} and nothing stored",
                "refused, but the store changed",
            ) from None
        return f"refused as expected: {e}", []
    except Exception as e:  # the engine itself broke: report it as this step's failure
        expected = "accepted" if step.error is None else f"refused with {step.error}"
        raise _StepFailed(expected, f"the engine crashed: {type(e).__name__}: {e}") from None
    if step.error is not None:
        events = ", ".join(f"{r.stream} {r.ref} {r.event}" for r in outcome.recorded)
        raise _StepFailed(
            f"refused with {step.error}",
            f"accepted (recorded {events or 'nothing'})",
            outcome.recorded,
        )
    return "accepted", outcome.recorded


def _escrow_word(view: OrderView) -> str:
    if view.escrow.released > 0:
        return "released"
    if view.escrow.returned > 0:
        return "returned"
    return "locked"


def _found(engine: Escrow, step: ExpectStep) -> dict[str, Any]:
    if step.target == "order":
        order = engine.order(step.ref)
        return {
            "state": order.state,
            "escrow": _escrow_word(order),
            "open_appeal": order.open_appeal,
        }
    if step.target == "appeal":
        appeal = engine.appeal(step.ref)
        return {
            "state": appeal.state,
            "outcome": appeal.outcome,
            "refund_state": appeal.refund_state,
            "clawback": appeal.clawback_state,
        }
    if step.target == "trader":
        trader = engine.trader(step.ref)
        return {"can_trade": trader.can_trade, "sanctions": frozenset(trader.kinds)}
    if step.target == "complaint":
        complaint = engine.complaint(step.ref)
        return {
            "state": complaint.state,
            "decision": complaint.decision,
            "overdue": complaint.overdue,
            "compensation": complaint.compensation,
        }
    ledger = engine.ledger(step.ref)
    return ledger.model_dump(exclude={"asset"})


def _show(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, frozenset | set):
        return "[" + ", ".join(sorted(value)) + "]"
    if isinstance(value, Decimal):
        return format(value.normalize(), "f")
    return str(value)


def _check(engine: Escrow, step: ExpectStep) -> None:
    try:
        found = _found(engine, step)
    except NotFound as e:
        raise _StepFailed(f"{step.target} {step.ref} to exist", str(e)) from None
    wrong = [k for k, v in step.checks.items() if found[k] != v]
    if wrong:
        expected = ", ".join(f"{k}: {_show(step.checks[k])}" for k in step.checks)
        got = ", ".join(f"{k}: {_show(found[k])}" for k in step.checks)
        raise _StepFailed(f"{step.target} {step.ref} with {expected}", got)
