"""One store URL selects the backend: `memory:`, `sqlite:///path.db`, `postgresql://...`.

The event store is `eventsourcing`'s own persistence module for that backend, configured here;
the read models live in the same database (an in-process SQLite database for `memory:`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from urllib.parse import parse_qs, unquote, urlparse

from eventsourcing.utils import get_topic

from escrow.errors import ValidationError
from escrow.pg_recorder import PostgresRecorder


@dataclass(frozen=True)
class StoreConfig:
    url: str
    backend: str  # "memory" | "sqlite" | "postgresql"
    env: dict[str, str] = field(default_factory=dict)
    sqlite_path: str | None = None
    postgres_conninfo: str | None = None
    postgres_schema: str | None = None


def parse_store_url(url: str) -> StoreConfig:
    if url == "memory:":
        return StoreConfig(url, "memory", {"PERSISTENCE_MODULE": "eventsourcing.popo"})
    if url.startswith("sqlite:///"):
        path = url.removeprefix("sqlite:///")
        if not path or path == "/":
            raise ValidationError(f"no database file in store URL {url!r}")
        env = {
            "PERSISTENCE_MODULE": "eventsourcing.sqlite",
            "SQLITE_DBNAME": path,
            "SQLITE_LOCK_TIMEOUT": "30",
        }
        return StoreConfig(url, "sqlite", env, sqlite_path=path)
    if url.startswith(("postgresql://", "postgres://")):
        parts = urlparse(url)
        dbname = parts.path.lstrip("/")
        if not parts.hostname or not dbname:
            raise ValidationError(f"store URL {url!r} needs a host and a database name")
        schema = parse_qs(parts.query).get("schema", [""])[0]
        env = {
            "PERSISTENCE_MODULE": "eventsourcing.postgres",
            "POSTGRES_DBNAME": dbname,
            "POSTGRES_HOST": parts.hostname,
            "POSTGRES_PORT": str(parts.port or 5432),
            "POSTGRES_USER": unquote(parts.username or "postgres"),
            "POSTGRES_PASSWORD": unquote(parts.password or ""),
            "POSTGRES_POOL_SIZE": "8",
            "POSTGRES_MAX_OVERFLOW": "8",
            "POSTGRES_ENABLE_DB_FUNCTIONS": "y",
            "APPLICATION_RECORDER_TOPIC": get_topic(PostgresRecorder),
        }
        if schema:
            env["POSTGRES_SCHEMA"] = schema
        conninfo = (
            f"host={parts.hostname} port={parts.port or 5432} dbname={dbname} "
            f"user={unquote(parts.username or 'postgres')}"
        )
        if parts.password:
            conninfo += f" password={unquote(parts.password)}"
        return StoreConfig(
            url, "postgresql", env, postgres_conninfo=conninfo, postgres_schema=schema or None
        )
    raise ValidationError(
        f"unknown store URL {url!r}: use memory:, sqlite:///file.db or postgresql://..."
    )
