"""The embedding API: `Escrow(store_url, policy=, clock=)` with `execute(command)`,
the queries and `tick(now)`. A thin front over the wiring (escrow.commands.bootstrap), the command
runner (escrow.commands.execution), the deadlines (escrow.commands.deadlines) and the queries
(escrow.commands.queries). Thread-safe; a version clash reloads and decides again (bounded), so two
racing commands end as one winner and one clean refusal.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from prometheus_client import CollectorRegistry

from escrow.clock import Clock, SystemClock, bounded
from escrow.commands.bootstrap import guarded, wire
from escrow.commands.deadlines import fire_due
from escrow.commands.execution import CommandRunner
from escrow.commands.metrics import CommandMetrics, EscrowCollector
from escrow.commands.models import Command, parse_command
from escrow.commands.queries import Queries
from escrow.commands.recent import STREAMS, RecentStreams
from escrow.errors import ValidationError
from escrow.policy import Policy
from escrow.views import Outcome


class Escrow(Queries):
    def __init__(
        self,
        store: str,
        *,
        policy: Policy | None = None,
        clock: Clock | None = None,
        read_models: str | None = None,
        recent_streams: int = STREAMS,
        create: bool = True,
        metrics: CollectorRegistry | None = None,
    ) -> None:
        """`store`: a store URL (README, Store URLs), required: a silent in-memory default
        would lose everything at the next restart of a program that forgot it; tests and
        scenarios say `memory:` explicitly. `read_models`: "inline" or "deferred" (default: by
        backend, see escrow.commands.bootstrap.READ_MODELS). `recent_streams`: how many of the
        aggregates it saved last the engine keeps in memory, to decide the next command on
        them without reading them back (escrow.commands.recent; 0 keeps none). `create` False: the
        store must already exist (a tool that only reads must not leave an empty store behind
        a typo); else StoreNotFound. A store that cannot be used raises a StoreError
        (escrow.errors). Who is an agent or supervisor is no argument: it is recorded in the
        store by the `appoint_agent` and `dismiss_agent` commands, the same for every process.
        `metrics`: a prometheus_client registry to publish the engine's metrics in
        (escrow.commands.metrics; one engine per registry), e.g. the backend's own
        `prometheus_client.REGISTRY`; none are counted without it."""
        if policy is not None and not isinstance(policy, Policy):
            raise ValidationError(f"policy is a Policy, not {type(policy).__name__}")
        if (
            isinstance(recent_streams, bool)
            or not isinstance(recent_streams, int)
            or recent_streams < 0
        ):
            raise ValidationError("recent_streams is a whole number, 0 or more")
        if metrics is not None and not isinstance(metrics, CollectorRegistry):
            raise ValidationError(f"metrics is a CollectorRegistry, not {type(metrics).__name__}")
        counted = None if metrics is None else CommandMetrics()
        wiring = wire(store, read_models, create)
        runner = CommandRunner(
            wiring, RecentStreams(recent_streams), policy or Policy(), metrics=counted
        )
        super().__init__(wiring, runner, clock or SystemClock())
        self._published: tuple[CollectorRegistry, EscrowCollector] | None = None
        if metrics is not None and counted is not None:
            collector = EscrowCollector(self, counted)
            try:
                metrics.register(collector)
            except ValueError as e:  # its names are taken: another engine publishes there
                self.close()
                raise ValidationError(f"metrics: {e}; give each engine a registry") from e
            self._published = (metrics, collector)

    def __enter__(self) -> Escrow:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._published is not None:
            registry, collector = self._published
            registry.unregister(collector)
            self._published = None
        self.wiring.close()

    @guarded
    def execute(self, command: Command) -> Outcome:
        """Decide and record one command; raises an EscrowError (with its code) on refusal."""
        return self.runner.run(command, self.clock.now())

    @guarded
    def run(self, name: str, fields: dict[str, Any]) -> Outcome:
        """`execute` for plain data, e.g. `run("release", {"order": "o1", "by": "alice"})`."""
        return self.execute(parse_command(name, fields))

    @guarded
    def tick(self, now: datetime | None = None) -> list[Outcome]:
        """Fire every deadline due at `now` (default: the clock; never ahead of it), each once,
        as system commands; a deadline that no longer applies records nothing."""
        clock = self.clock.now()
        if now is None:
            return fire_due(self.runner, clock)
        now = bounded(now, "now")
        if now > clock:
            raise ValidationError(
                f"now: {now.isoformat()} is ahead of the engine's clock ({clock.isoformat()}); "
                "deadlines fire at the clock's time, so that recorded time never runs ahead of it"
            )
        return fire_due(self.runner, now)

    @guarded
    def catch_up(self) -> int:
        """Bring every read model up to date now (queries and `tick` do it themselves; this
        is for programs reading the tables with plain SQL in deferred mode)."""
        return self.wiring.projector.catch_up()
