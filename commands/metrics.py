"""Metrics in Prometheus format (`prometheus_client`), for `escrow serve`'s `/metrics` and for
an embedding backend's own registry: `Escrow(store, metrics=registry)`.

Two kinds, kept apart by their cost:
- counted on the command path (commands and refusals by command and code, command latency,
  deadlines fired): `CommandMetrics`, plain counters and a histogram, a few microseconds per
  command, nothing read from the store;
- read from the store when scraped, never on the command path (each read model's lag behind
  the log head, each relay's lag, deadlines due): `EscrowCollector`, a custom collector, so a
  gauge is exactly as fresh as the scrape and costs nothing between scrapes.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from escrow.projections.deadlines import due_counts

if TYPE_CHECKING:
    from escrow.commands.api import Escrow

log = logging.getLogger("escrow.metrics")

# Seconds: a command on memory takes about 0.2 ms, a durable one on PostgreSQL 2-10 ms; a
# command over a minute is a stuck store, which the last bucket catches.
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10)
RELAY_PREFIX = "relay:"  # escrow.commands.relay.relay.tracking_name: "relay:STREAM"


class CommandMetrics:
    """What the command path counts, in a registry of its own (collected through
    EscrowCollector, so that an engine can be scraped from any registry it is given)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self._commands = Counter(
            "escrow_commands",
            "Commands accepted (recorded, or answered again from a command_id's receipt).",
            ["command"],
            registry=self.registry,
        )
        self._refusals = Counter(
            "escrow_command_refusals",
            "Commands refused by the rules (nothing recorded), by refusal code.",
            ["command", "code"],
            registry=self.registry,
        )
        self._latency = Histogram(
            "escrow_command_duration_seconds",
            "Time to decide and record a command (accepted or refused).",
            ["command"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self._fired = Counter(
            "escrow_deadlines_fired",
            "Deadlines fired by tick (each recorded as a system command).",
            ["kind"],
            registry=self.registry,
        )
        # The labelled children, looked up once per label value (labels() takes a lock and
        # builds a key each time).
        self._accepted: dict[str, tuple[Counter, Histogram]] = {}
        self._refused: dict[tuple[str, str], Counter] = {}

    def accepted(self, command: str, seconds: float) -> None:
        children = self._accepted.get(command)
        if children is None:
            children = self._accepted[command] = (
                self._commands.labels(command),
                self._latency.labels(command),
            )
        children[0].inc()
        children[1].observe(seconds)

    def refused(self, command: str, code: str, seconds: float) -> None:
        child = self._refused.get((command, code))
        if child is None:
            child = self._refused[command, code] = self._refusals.labels(command, code)
        child.inc()
        self._latency.labels(command).observe(seconds)

    def fired(self, kind: str) -> None:
        self._fired.labels(kind).inc()


class EscrowCollector(Collector):
    """An engine's metrics, for any registry: its command counters, and the gauges read from
    the store on each scrape. A store that does not answer leaves the gauges out of that
    scrape (the counters still show), rather than failing the whole scrape."""

    def __init__(self, escrow: Escrow, counted: CommandMetrics) -> None:
        self.escrow = escrow
        self.counted = counted

    def describe(self) -> Iterator[Metric]:
        """The names it publishes, without reading the store: what a registry checks for
        clashes when the collector is registered."""
        yield from self.counted.registry.collect()
        yield from _gauges()

    def collect(self) -> Iterator[Metric]:
        yield from self.counted.registry.collect()
        try:
            gauges = self._read()
        except Exception as e:  # a scrape must answer while the store is away
            log.warning("store metrics unavailable: %s", e, extra={"error": type(e).__name__})
            return
        yield from gauges

    def _read(self) -> tuple[GaugeMetricFamily, ...]:
        wiring = self.escrow.wiring
        head = int(wiring.app.recorder.max_notification_id() or 0)
        rows = wiring.read.query("SELECT name, position FROM escrow_tracking ORDER BY name")
        now = self.escrow.clock.now()
        gauges = head_gauge, models, relays, due = _gauges()
        head_gauge.add_metric([], head)
        known = set(wiring.projector.names)
        for name, position in rows:
            lag = max(head - int(position), 0)
            if name in known:
                models.add_metric([name], lag)
            elif name.startswith(RELAY_PREFIX):
                relays.add_metric([name.removeprefix(RELAY_PREFIX)], lag)
        for kind, count in due_counts(wiring.read, now).items():
            due.add_metric([kind], count)
        return gauges


def _gauges() -> tuple[GaugeMetricFamily, ...]:
    """The gauges read on scrape, empty: (log head, read-model lag, relay lag, deadlines due)."""
    return (
        GaugeMetricFamily("escrow_log_head", "The last position in the event log."),
        GaugeMetricFamily(
            "escrow_read_model_lag_events",
            "Events in the log a read model has not projected yet.",
            labels=["model"],
        ),
        GaugeMetricFamily(
            "escrow_relay_lag_events",
            "Events in the log a relay has not published (and had acknowledged) yet.",
            labels=["stream"],
        ),
        GaugeMetricFamily(
            "escrow_deadlines_due",
            "Deadlines due now and not fired yet (as the deadline read model has them).",
            labels=["kind"],
        ),
    )
