"""Runs one command to its end: decides it on a unit of loaded aggregates, retries on a
version clash (bounded), answers a repeated `command_id` from its receipt, saves atomically
and, inline, projects in the same transaction."""

from __future__ import annotations

import logging
import random
import threading
import time
from datetime import UTC, datetime
from typing import Any

from eventsourcing.persistence import IntegrityError

from escrow.commands.bootstrap import DEFERRED, Wiring
from escrow.commands.handlers import HANDLERS
from escrow.commands.metrics import CommandMetrics
from escrow.commands.models import Command
from escrow.commands.receipts import Receipt, fingerprint
from escrow.commands.recent import RecentStreams
from escrow.commands.system import SystemCommand
from escrow.commands.unit import Unit
from escrow.errors import ConcurrencyConflict, EscrowError, ValidationError
from escrow.policy import Policy
from escrow.recording import EscrowAggregate
from escrow.views import Outcome, Recorded

MAX_ATTEMPTS = 12
REFS = ("order", "appeal", "complaint", "trader")  # the command fields that name a stream

log = logging.getLogger("escrow.commands")


class CommandRunner:
    def __init__(
        self,
        wiring: Wiring,
        recent: RecentStreams,
        policy: Policy,
        metrics: CommandMetrics | None = None,
    ) -> None:
        self.wiring = wiring
        self.metrics = metrics
        self.recent = recent
        self.policy = policy
        self.latest = datetime.min.replace(tzinfo=UTC)  # the latest time it recorded at
        self._time = threading.Lock()

    def unit(
        self,
        now: datetime,
        *,
        system: bool = False,
        attempt: int = 0,
        recent: RecentStreams | None = None,
    ) -> Unit:
        """One attempt's unit; `recent` lends it other aggregates than the engine's kept
        streams (escrow.commands.allowed's throwaway copies)."""
        return Unit(
            self.wiring.app,
            self.recent if recent is None else recent,
            now,
            self.policy,
            system=system,
            attempt=attempt,
        )

    def run(self, command: Command, now: datetime) -> Outcome:
        """Decide and record `command` at `now`; raises an EscrowError on refusal. Counted and
        logged here, once per command whatever its retries: cheap when nobody listens (the
        log line is built only if escrow.commands is enabled for INFO)."""
        started = time.perf_counter()
        try:
            outcome = self._run(command, now)
        except EscrowError as refusal:
            seconds = time.perf_counter() - started
            if self.metrics is not None:
                self.metrics.refused(command.name, refusal.code, seconds)
            if log.isEnabledFor(logging.INFO):
                self._log_refused(command, refusal, seconds)
            raise
        seconds = time.perf_counter() - started
        if self.metrics is not None:
            self.metrics.accepted(command.name, seconds)
        if log.isEnabledFor(logging.INFO):
            self._log_accepted(command, outcome, seconds)
        return outcome

    @staticmethod
    def _log_accepted(command: Command, outcome: Outcome, seconds: float) -> None:
        replayed = " (replayed)" if outcome.replayed else ""
        said = f"{len(outcome.recorded)} events{replayed}"
        facts = {"events": len(outcome.recorded), "replayed": outcome.replayed}
        _log("accepted", command, said, seconds, facts)

    @staticmethod
    def _log_refused(command: Command, refusal: EscrowError, seconds: float) -> None:
        said = refusal.code + (f" [{refusal.rule}]" if refusal.rule else "")
        _log("refused", command, said, seconds, {"code": refusal.code, "rule": refusal.rule})

    def _run(self, command: Command, now: datetime) -> Outcome:
        handler = HANDLERS.get(type(command))
        if handler is None:
            raise ValidationError(f"not a command: {type(command).__name__}")
        with self._time:  # what this engine records never goes back, whatever its clock does
            now = self.latest = self.moment(now)
        system = isinstance(command, SystemCommand)
        for attempt in range(MAX_ATTEMPTS):
            unit = self.unit(now, system=system, attempt=attempt)
            receipt_ref = command.command_id
            if receipt_ref is not None:
                earlier = unit.find(Receipt, receipt_ref)
                if earlier is not None:
                    return self._replay(command, earlier)
            try:
                handler(unit, command)
            except EscrowError:
                if attempt + 1 < MAX_ATTEMPTS and unit.moved():
                    continue  # refused on old or mixed states (read skew): decide again
                raise
            if unit.moved(unit.kept_unchanged()):
                continue
            pending = [(a, list(a.pending_events)) for a in unit.changed]
            recorded = [self._describe(a, e) for a, events in pending for e in events]
            if receipt_ref is not None:
                unit.add(
                    Receipt.issue(
                        receipt_ref,
                        command.name,
                        command.actor,
                        self._print(command),
                        [r.model_dump(mode="json") for r in recorded],
                        now,
                    )
                )
            try:
                self._save(unit)
            except IntegrityError:
                time.sleep(random.uniform(0, 0.002 * (attempt + 1)))
                continue
            unit.keep()
            return Outcome.model_construct(
                command=command.name, command_id=receipt_ref, recorded=recorded, replayed=False
            )
        raise ConcurrencyConflict(f"{command.name} kept losing races; nothing was recorded")

    def moment(self, now: datetime) -> datetime:
        """The time a command given at `now` is decided at: never before what was recorded."""
        return max(now, self.latest)

    def _save(self, unit: Unit) -> None:
        """Record the unit's events atomically and, inline, project them."""
        app, projector = self.wiring.app, self.wiring.projector
        if self.wiring.read_models == DEFERRED:
            app.save(*unit.changed)
            return
        if self.wiring.config.backend == "sqlite":
            events = [e for a in unit.changed for e in a.pending_events]
            with projector.inside(events) as hook:
                app.save(*unit.changed, project=hook)
            if not hook.applied:
                projector.catch_up()
            return
        recordings = app.save(*unit.changed)
        if recordings:
            first = recordings[0].notification.id
            last = recordings[-1].notification.id
            done = [r.domain_event for r in recordings]
            if not projector.apply(first, done, last):
                projector.catch_up()

    @staticmethod
    def _print(command: Command) -> str:
        return fingerprint(command.name, command.model_dump(mode="json", exclude={"command_id"}))

    def _replay(self, command: Command, receipt: Receipt) -> Outcome:
        if receipt.fingerprint != self._print(command):
            raise ValidationError(
                f"command_id {command.command_id!r} was already used for another command"
            )
        return Outcome(
            command=command.name,
            command_id=command.command_id,
            replayed=True,
            recorded=[Recorded.model_validate(r) for r in receipt.recorded],
        )

    @staticmethod
    def _describe(aggregate: EscrowAggregate, event: Any) -> Recorded:
        return Recorded.model_construct(  # trusted fields straight from the event
            stream=aggregate.KIND,
            ref=aggregate.ref,
            version=event.originator_version,
            event=type(event).__name__,
            rule=event.rule,
            actor=event.actor,
            at=event.timestamp,
        )


def _log(verb: str, command: Command, said: str, seconds: float, facts: dict[str, Any]) -> None:
    """One line on escrow.commands: `VERB COMMAND REFS: SAID, N ms`, the facts as fields."""
    refs = _refs(command)
    log.info(
        "%s %s %s: %s, %.1f ms",
        verb,
        command.name,
        " ".join(f"{k}={v}" for k, v in refs.items()),
        said,
        seconds * 1000,
        extra={
            "command": command.name,
            "refs": refs,
            "actor": command.actor,
            "duration_ms": round(seconds * 1000, 3),
            **facts,
        },
    )


def _refs(command: Command) -> dict[str, str]:
    """The ids the command names (order, appeal, complaint, trader), for its log line."""
    fields = vars(command)  # not getattr: a missing attribute costs pydantic an exception
    return {k: v for k in REFS if isinstance(v := fields.get(k), str)}
