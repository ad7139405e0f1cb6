"""One store URL selects the backend: `memory:`, `sqlite:///path.db`, `postgresql://...`.

The event store is `eventsourcing`'s own persistence module for that backend, configured here;
the read models live in the same database (an in-process SQLite database for `memory:`).

A URL is honoured whole or refused: a parameter we cannot pass on is a validation error naming
it, never dropped, since a dropped `sslmode=require` would connect in clear. PostgreSQL URLs take
libpq's connection parameters (passed to every connection the engine makes: event store, read
models, runner, audit) and ours: `schema`, `pool_size`, `max_overflow`. SQLite URLs take none.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from urllib.parse import parse_qsl, unquote, urlsplit

import psycopg
from eventsourcing.utils import get_topic
from psycopg.conninfo import make_conninfo

from escrow.errors import ValidationError
from escrow.pg_recorder import EXTRA_PARAMS, PostgresFactory, PostgresRecorder

CONNECT_TIMEOUT = 5  # seconds; libpq's default waits forever, eventsourcing's pool 30 s
POOL_SIZE, MAX_OVERFLOW = 8, 8
SCHEMA = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}")

# libpq's connection parameters that may be given in a URL's query, with what a value must be:
# a set of words, an integer range, or None for any text (libpq checks it when connecting).
_BOOL = frozenset({"0", "1"})
LIBPQ_PARAMS: dict[str, frozenset[str] | tuple[int, int] | None] = {
    "hostaddr": None,
    "passfile": None,
    "channel_binding": frozenset({"disable", "prefer", "require"}),
    "connect_timeout": (1, 3600),
    "client_encoding": None,
    "options": None,
    "application_name": None,
    "fallback_application_name": None,
    "keepalives": _BOOL,
    "keepalives_idle": (0, 86400),
    "keepalives_interval": (0, 86400),
    "keepalives_count": (0, 1000),
    "tcp_user_timeout": (0, 86_400_000),
    "sslmode": frozenset({"disable", "allow", "prefer", "require", "verify-ca", "verify-full"}),
    "sslnegotiation": frozenset({"postgres", "direct"}),
    "sslcompression": _BOOL,
    "sslcert": None,
    "sslkey": None,
    "sslpassword": None,
    "sslcertmode": frozenset({"disable", "allow", "require"}),
    "sslrootcert": None,
    "sslcrl": None,
    "sslcrldir": None,
    "sslsni": _BOOL,
    "requirepeer": None,
    "ssl_min_protocol_version": frozenset({"TLSv1", "TLSv1.1", "TLSv1.2", "TLSv1.3"}),
    "ssl_max_protocol_version": frozenset({"TLSv1", "TLSv1.1", "TLSv1.2", "TLSv1.3"}),
    "gssencmode": frozenset({"disable", "prefer", "require"}),
    "gssdelegation": _BOOL,
    "krbsrvname": None,
    "gsslib": None,
    "service": None,
    "target_session_attrs": frozenset(
        {"any", "read-write", "read-only", "primary", "standby", "prefer-standby"}
    ),
    "load_balance_hosts": frozenset({"disable", "random"}),
}
OWN_PARAMS: dict[str, tuple[int, int] | None] = {
    "schema": None,
    "pool_size": (1, 100),
    "max_overflow": (0, 100),
}
IN_THE_URL = ("host", "port", "dbname", "user", "password")  # written before the `?`


@dataclass(frozen=True)
class StoreConfig:
    url: str
    backend: str  # "memory" | "sqlite" | "postgresql"
    env: dict[str, str] = field(default_factory=dict)
    sqlite_path: str | None = None
    postgres_conninfo: str | None = None
    postgres_schema: str | None = None
    connect_timeout: int = CONNECT_TIMEOUT

    @property
    def shown(self) -> str:
        """The URL as it may be printed or logged: its password masked."""
        return mask(self.url)


# `user:secret@`, wherever it stands: also in a URL too mangled to have a scheme.
_URL_PASSWORD = re.compile(r"([^/?#@\s:'\"]*:)[^@\s/'\"]*@")
_KEY_PASSWORD = re.compile(
    r"(\b(?:ssl)?password\s*=\s*)('(?:[^'\\]|\\.)*'|[^\s&'\"]*)", re.IGNORECASE
)


def mask(text: str) -> str:
    """`text` with every password in it masked: a URL's `user:secret@`, and `password=` or
    `sslpassword=` in a URL query or a libpq conninfo. The one masking function: anything that
    prints, logs or raises a store URL or a driver's message passes through it."""
    if "@" in text:  # the checks first: most log lines hold neither, and the patterns cost
        text = _URL_PASSWORD.sub(r"\1***@", text)
    if "assword" in text.lower():
        text = _KEY_PASSWORD.sub(r"\1***", text)
    return text


def parse_store_url(url: str) -> StoreConfig:
    if not isinstance(url, str):
        raise _refused(f"a store URL is a string, not {type(url).__name__}")
    if _controls(url):
        raise _refused(f"store URL {url!r} holds control characters")
    if url == "memory:":
        return StoreConfig(url, "memory", {"PERSISTENCE_MODULE": "eventsourcing.popo"})
    if url.startswith("sqlite:///"):
        return _sqlite(url)
    if url.startswith(("postgresql://", "postgres://")):
        return _postgres(url)
    raise _refused(
        f"unknown store URL {mask(url)!r}: use memory:, sqlite:///file.db or postgresql://..."
    )


def _sqlite(url: str) -> StoreConfig:
    path = url.removeprefix("sqlite:///")
    if "?" in path:
        given = ", ".join(k for k, _ in parse_qsl(path.split("?", 1)[1], keep_blank_values=True))
        raise _refused(
            f"store URL {mask(url)!r}: a SQLite store URL takes no parameters "
            f"(got {given or '?'}); it is sqlite:///file.db"
        )
    if not path or path.endswith("/"):
        raise _refused(f"no database file in store URL {url!r}")
    env = {
        "PERSISTENCE_MODULE": "eventsourcing.sqlite",
        "SQLITE_DBNAME": path,
        "SQLITE_LOCK_TIMEOUT": "30",
    }
    return StoreConfig(url, "sqlite", env, sqlite_path=path)


def _postgres(url: str) -> StoreConfig:
    shown = mask(url)
    try:
        parts = urlsplit(url)
        port = parts.port or 5432
    except ValueError as e:
        raise _refused(f"store URL {shown!r}: {e}") from None
    dbname = unquote(parts.path.lstrip("/"))
    if _controls(dbname + unquote(parts.username or "") + unquote(parts.password or "")):
        raise _refused(f"store URL {shown!r} holds control characters")
    if not parts.hostname or not dbname:
        raise _refused(f"store URL {shown!r} needs a host and a database name")
    if parts.fragment:
        raise _refused(f"store URL {shown!r}: no #fragment in a store URL")
    params = _query(parts.query, shown)
    own = {k: params.pop(k) for k in list(params) if k in OWN_PARAMS}
    schema = own.get("schema", "")
    if schema and not SCHEMA.fullmatch(schema):
        raise _refused(
            f"store URL {shown!r}: schema {schema!r} is not a plain name (letters, digits, _)"
        )
    pool_size = int(own.get("pool_size", POOL_SIZE))
    max_overflow = int(own.get("max_overflow", MAX_OVERFLOW))
    if pool_size + max_overflow < 2:  # the recorder holds one while it creates tables on another
        raise _refused(f"store URL {shown!r}: pool_size + max_overflow is at least 2")
    params.setdefault("connect_timeout", str(CONNECT_TIMEOUT))
    user = unquote(parts.username or "postgres")
    password = unquote(parts.password or "")
    libpq = {"host": parts.hostname, "port": str(port), "dbname": dbname, "user": user}
    if password:
        libpq["password"] = password
    env = {
        "PERSISTENCE_MODULE": get_topic(PostgresFactory),
        "POSTGRES_DBNAME": dbname,
        "POSTGRES_HOST": parts.hostname,
        "POSTGRES_PORT": str(port),
        "POSTGRES_USER": user,
        "POSTGRES_PASSWORD": password,
        "POSTGRES_CONNECT_TIMEOUT": params["connect_timeout"],
        "POSTGRES_POOL_SIZE": str(pool_size),
        "POSTGRES_MAX_OVERFLOW": str(max_overflow),
        "POSTGRES_ENABLE_DB_FUNCTIONS": "y",
        "APPLICATION_RECORDER_TOPIC": get_topic(PostgresRecorder),
        EXTRA_PARAMS: json.dumps(params, sort_keys=True),
    }
    if schema:
        env["POSTGRES_SCHEMA"] = schema
    try:
        conninfo = make_conninfo(**libpq, **params)
    except psycopg.ProgrammingError as e:  # what libpq cannot parse, it must not be sent
        raise _refused(f"store URL {shown!r}: {e}") from None
    return StoreConfig(
        url,
        "postgresql",
        env,
        postgres_conninfo=conninfo,
        postgres_schema=schema or None,
        connect_timeout=int(params["connect_timeout"]),
    )


def _controls(text: str) -> bool:
    """Whether `text` holds a control character: never meant in a URL, and a NUL would be
    cut short by libpq rather than refused."""
    return any(ord(c) < 32 or ord(c) == 127 for c in text)


def _refused(message: str) -> ValidationError:
    """A refusal of a URL: whatever of the URL it quotes, a key or a value, goes out masked."""
    return ValidationError(mask(message))


def _query(query: str, shown: str) -> dict[str, str]:
    """The URL's parameters, each checked: known, given once, with a value it may take."""
    try:
        pairs = parse_qsl(query, keep_blank_values=True, strict_parsing=bool(query))
    except ValueError:
        raise _refused(f"store URL {shown!r}: malformed parameters") from None
    params: dict[str, str] = {}
    for key, value in pairs:
        where = f"store URL {shown!r}: parameter {key!r}"
        if key in IN_THE_URL:
            raise _refused(f"{where}: write the {key} in the URL itself, not as a parameter")
        if key not in LIBPQ_PARAMS and key not in OWN_PARAMS:
            raise _refused(
                f"{where} is not one the engine can honour (libpq's connection parameters, "
                "schema, pool_size, max_overflow)"
            )
        if _controls(key + value):
            raise _refused(f"{where} holds control characters")
        if key in params:
            raise _refused(f"{where} is given twice")
        allowed = LIBPQ_PARAMS.get(key) or OWN_PARAMS.get(key)
        if not value:
            raise _refused(f"{where} has no value")
        if isinstance(allowed, frozenset) and value not in allowed:
            raise _refused(f"{where} is one of {', '.join(sorted(allowed))}")
        if isinstance(allowed, tuple):
            low, high = allowed
            if not re.fullmatch(r"[0-9]{1,9}", value) or not low <= int(value) <= high:
                raise _refused(f"{where} is a whole number from {low} to {high}")
            value = str(int(value))
        params[key] = value
    return params
