"""Every test that touches storage runs on memory, SQLite and PostgreSQL.

PostgreSQL tests use the real server (ESCROW_TEST_POSTGRES, default
postgresql://postgres@127.0.0.1:5432/test), each in a fresh schema dropped afterwards. When the
server is unreachable they are skipped with a line saying so, unless ESCROW_REQUIRE_POSTGRES=1
(as `.ci/run` sets), where they fail.
"""

from __future__ import annotations

import logging
import os
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import psycopg
import pytest

from escrow.clock import ManualClock
from escrow.commands.api import Escrow
from escrow.commands.staffing import appoint
from escrow.policy import Policy

PG_URL = os.environ.get("ESCROW_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")
REQUIRE_PG = os.environ.get("ESCROW_REQUIRE_POSTGRES") == "1"
START = datetime(2026, 3, 1, 10, 0, tzinfo=UTC)
AGENTS = frozenset({"carol", "dave"})
SUPERVISORS = frozenset({"sam"})  # an agent who also handles complaints (E3)

_pg_error: str | None = None
_pg_checked = False


def postgres_unavailable() -> str | None:
    global _pg_checked, _pg_error
    if not _pg_checked:
        _pg_checked = True
        try:
            psycopg.connect(_conninfo(), connect_timeout=3).close()
        except psycopg.Error as e:
            _pg_error = str(e).strip().splitlines()[0]
    return _pg_error


def _conninfo() -> str:
    return PG_URL.split("?")[0]


def pytest_report_header() -> str:
    problem = postgres_unavailable()
    if problem is None:
        return f"postgresql: {_conninfo()} (tests run on memory, sqlite and postgresql)"
    if REQUIRE_PG:
        return f"postgresql: UNREACHABLE ({problem}) and required: its tests will fail"
    return f"postgresql: unreachable ({problem}): PostgreSQL tests are SKIPPED, only memory and sqlite run"


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    problem = postgres_unavailable()
    if problem is not None and not REQUIRE_PG:
        terminalreporter.write_line(
            f"NOTE: PostgreSQL unreachable ({problem}); every PostgreSQL test was skipped. "
            "Start the server (see README) to run them."
        )


@pytest.fixture(autouse=True)
def _escrow_logging_as_found() -> Iterator[None]:
    """A command run in process (`CliRunner`) configures the `escrow` loggers as a process
    would (escrow.commands.logs.configure); put them back, so that one test's INFO level does not
    make every later test format a line per command."""
    logger = logging.getLogger("escrow")
    found = (list(logger.handlers), logger.level, logger.propagate)
    yield
    logger.handlers[:], logger.level, logger.propagate = found[0], found[1], found[2]


@pytest.fixture
def pg_schema_url() -> Iterator[str]:
    """A fresh PostgreSQL schema as a store URL; dropped afterwards."""
    problem = postgres_unavailable()
    if problem is not None:
        if REQUIRE_PG:
            pytest.fail(
                f"PostgreSQL is required (ESCROW_REQUIRE_POSTGRES=1) but unreachable: {problem}"
            )
        pytest.skip(f"PostgreSQL unreachable: {problem}")
    schema = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(_conninfo(), autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    yield f"{_conninfo()}?schema={schema}"
    with psycopg.connect(_conninfo(), autocommit=True) as conn:
        conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")


@pytest.fixture(params=["memory", "sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "memory":
        return "memory:"
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'escrow.db'}"
    return str(request.getfixturevalue("pg_schema_url"))


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(START)


@pytest.fixture
def make_engine(store_url: str, clock: ManualClock) -> Iterator[Callable[..., Escrow]]:
    """Open engines on this test's store (several may share it, as processes would)."""
    opened: list[Escrow] = []

    def make(
        policy: Policy | None = None, url: str | None = None, read_models: str | None = None
    ) -> Escrow:
        engine = Escrow(url or store_url, policy=policy, clock=clock, read_models=read_models)
        opened.append(engine)
        appoint(engine, AGENTS, SUPERVISORS)  # once per store: a second engine finds them
        return engine

    yield make
    for engine in opened:
        engine.close()


@pytest.fixture
def engine(make_engine: Callable[..., Escrow]) -> Escrow:
    return make_engine()
