"""The PostgreSQL event recorder, with its tables created by one process at a time.

`CREATE TABLE IF NOT EXISTS` is not safe against itself: two sessions creating the same table
at once both pass the check and one fails on `pg_type_typname_nsp_index`. That is exactly two
workers of `escrow serve`, or a backend and `escrow projections run`, started together on a new
database. A session-level advisory lock named after the schema makes the others wait, after
which their `IF NOT EXISTS` finds the tables.
"""

from __future__ import annotations

from eventsourcing.postgres import PostgresApplicationRecorder

CREATING = "escrow:create-tables:"  # + schema: the advisory lock's name, hashed by PostgreSQL


class PostgresRecorder(PostgresApplicationRecorder):
    def create_table(self) -> None:
        with self.datastore.get_connection() as conn:
            conn.autocommit = True
            key = CREATING + self.datastore.schema
            conn.execute("SELECT pg_advisory_lock(hashtext(%s))", [key])
            try:
                super().create_table()
            finally:
                conn.execute("SELECT pg_advisory_unlock(hashtext(%s))", [key])
