"""The PostgreSQL event store as the engine configures it: tables created by one process at a
time, and every libpq parameter of the store URL on every connection of the pool.

`CREATE TABLE IF NOT EXISTS` is not safe against itself: two sessions creating the same table
at once both pass the check and one fails on `pg_type_typname_nsp_index`. That is exactly two
workers of `escrow serve`, or a backend and `escrow projections run`, started together on a new
database. A session-level advisory lock named after the schema makes the others wait, after
which their `IF NOT EXISTS` finds the tables.

The library's factory reads host, port, database, user and password from its environment and
nothing else of libpq's, so TLS settings, timeouts or an application name in the URL would be
lost; the factory here hands them to the pool before its first connection.
"""

from __future__ import annotations

import json

from eventsourcing.postgres import PostgresApplicationRecorder
from eventsourcing.postgres import PostgresFactory as LibraryFactory
from eventsourcing.utils import Environment, EnvType

CREATING = "escrow:create-tables:"  # + schema: the advisory lock's name, hashed by PostgreSQL
EXTRA_PARAMS = "ESCROW_POSTGRES_PARAMS"  # JSON: libpq parameters beyond host, port, db, user


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


class PostgresFactory(LibraryFactory):
    def __init__(self, env: Environment | EnvType | None) -> None:
        super().__init__(env)
        params = json.loads(self.env.get(EXTRA_PARAMS) or "{}")
        kwargs = self.datastore.pool.kwargs
        assert isinstance(kwargs, dict)  # the library's own, read at each new connection
        kwargs.update(params)
