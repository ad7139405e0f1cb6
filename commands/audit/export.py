"""`escrow audit export`: the events of a store, or of one order's timeline, as the very JSON
objects the relay publishes (`escrow.commands.events`), so an auditor's file and a consumer's stream
can be compared line by line."""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable, Iterator
from datetime import datetime
from typing import IO, Any

from escrow.commands.audit.history import History, timeline
from escrow.commands.events import EventJson, is_event

CSV_COLUMNS = ("position", "at", "kind", "ref", "stream", "version", "type", "actor", "rule")
MOVEMENT_COLUMNS = ("escrow", "asset", "amount", "to")


def export_records(
    history: History,
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    order: str | None = None,
) -> Iterator[dict[str, Any]]:
    """Events in log order (or one order's timeline), within [since, until] (recorded time)."""
    made = EventJson(history)

    def within(at: datetime) -> bool:
        return (since is None or at >= since) and (until is None or at <= until)

    if order is not None:
        for e in timeline(history, order):
            fields = {**e.fields, "timestamp": e.at, "actor": e.actor, "rule": e.rule}
            record = made.event(e.id, e.stream, e.version, e.topic, {**fields, "chain": e.chain})
            if within(e.at):
                yield record
        return
    for position, stream, version, topic, state in history.rows():
        if not is_event(topic):
            continue
        fields = history.decode(state)
        # Built even when out of the window: what the order's earlier events taught it
        # (its asset, whether it settled already) decides a later event's movement.
        record = made.event(position, stream, version, topic, fields)
        if within(fields["timestamp"]):
            yield record


def write_export(records: Iterable[dict[str, Any]], fmt: str, out: IO[str]) -> int:
    """JSON Lines (one event object per line) or CSV (the envelope's columns, the movement's
    four, then `data` as JSON)."""
    count = 0
    writer = None
    if fmt == "csv":
        writer = csv.writer(out)
        writer.writerow(
            [*CSV_COLUMNS, *(f"movement_{c}" for c in MOVEMENT_COLUMNS), "chain", "data"]
        )
    for record in records:
        if writer is None:
            out.write(json.dumps(record, ensure_ascii=False) + "\n")
        else:
            movement = record["movement"] or {}
            writer.writerow(
                [
                    *("" if record[c] is None else record[c] for c in CSV_COLUMNS),
                    *(movement.get(c, "") for c in MOVEMENT_COLUMNS),
                    record["chain"] or "",
                    json.dumps(record["data"], ensure_ascii=False),
                ]
            )
        count += 1
    return count
