"""Several streams in one read.

Creating an order checks both parties for sanctions (O7): two trader streams, which the
library reads one query each, a round trip each on PostgreSQL, for streams that mostly do not
exist (a trader's stream starts with their first sanction). One query for both halves that
cost. The rows are the library's own stored events, decoded by its mapper as usual.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any
from uuid import UUID

from eventsourcing.persistence import StoredEvent
from eventsourcing.postgres import PostgresApplicationRecorder
from eventsourcing.sqlite import SQLiteApplicationRecorder
from psycopg.sql import SQL, Identifier

COLUMNS = "originator_id, originator_version, topic, state"


def select_streams(recorder: Any, ids: Sequence[UUID]) -> dict[UUID, list[StoredEvent]]:
    """The stored events of each stream (in version order), by stream; none for a stream
    with no events."""
    found: dict[UUID, list[StoredEvent]] = {}
    if isinstance(recorder, PostgresApplicationRecorder):
        statement = SQL(
            f"SELECT {COLUMNS} FROM {{}}.{{}} WHERE originator_id = ANY(%s) "
            "ORDER BY originator_id, originator_version"
        ).format(Identifier(recorder.datastore.schema), Identifier(recorder.events_table_name))
        with recorder.datastore.get_connection() as conn, conn.cursor() as curs:
            curs.execute(statement, [list(ids)], prepare=True)
            rows = [
                (r["originator_id"], r["originator_version"], r["topic"], bytes(r["state"]))
                for r in curs.fetchall()
            ]
    elif isinstance(recorder, SQLiteApplicationRecorder):
        marks = ",".join("?" * len(ids))
        with recorder.datastore.transaction(commit=False) as c:
            c.execute(
                f"SELECT {COLUMNS} FROM {recorder.events_table_name} "
                f"WHERE originator_id IN ({marks}) ORDER BY originator_id, originator_version",
                [i.hex for i in ids],
            )
            rows = [
                (UUID(r["originator_id"]), r["originator_version"], r["topic"], r["state"])
                for r in c.fetchall()
            ]
    else:
        return {i: events for i in ids if (events := list(recorder.select_events(i)))}
    for originator_id, version, topic, state in rows:
        found.setdefault(originator_id, []).append(
            StoredEvent(originator_id, version, topic, state)
        )
    return found
