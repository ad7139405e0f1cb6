"""The scripts in scripts/ are run by hand, rarely, so nothing else notices when they rot: each
runs here as a user would start it, in a smoke size (a few hundred events or a few lifecycles,
one round), on SQLite and on PostgreSQL, and its --json shows figures a reader would look at."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import psycopg
import pytest

from tests.conftest import _conninfo

ROOT = Path(__file__).resolve().parent.parent
BACKENDS = ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]


def run_script(name: str, *args: str) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / name), *args, "--json"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    return dict(json.loads(done.stdout))


def schemas_named(prefix: str) -> list[str]:
    with psycopg.connect(_conninfo()) as conn:
        rows = conn.execute("SELECT nspname FROM pg_namespace").fetchall()
    return [name for (name,) in rows if name.startswith(prefix)]


@pytest.mark.parametrize("backend", BACKENDS)
def test_bench_audit_verifies_the_store_it_fills(
    backend: str, request: pytest.FixtureRequest
) -> None:
    if backend == "sqlite":
        store = ["--stores", "sqlite"]
    else:
        store = ["--store", str(request.getfixturevalue("pg_schema_url")), "--fill"]
    result = run_script("bench_audit.py", "--events", "300", *store)[backend]
    assert result["events"] == result["written"] >= 300
    assert result["clean"] is True
    assert result["raw_events_per_s"] > 0
    assert result["verify_events_per_s"] > 0
    assert result["ratio"] > 0
    assert result["jobs"] == 1
    assert result["peak_rss_mb"] > 0


@pytest.mark.parametrize("backend", ["memory", *BACKENDS])
def test_bench_engine_compares_the_engine_with_the_bare_library(
    backend: str, request: pytest.FixtureRequest
) -> None:
    url = str(request.getfixturevalue("pg_schema_url")) if backend == "postgresql" else None
    more = ["--postgres", url] if url else []
    args = ["--lifecycles", "3", "--rounds", "1", "--stores", backend, *more]
    result = run_script("bench_engine.py", *args)[backend]
    assert result["engine"] > 0
    assert result["baseline"] > 0
    assert result["ratio"] > 0
    assert result["read_models"] == "deferred"
    assert result["inline"]["engine"] > 0
    assert result["inline"]["ratio"] > 0
    if url:  # every run's schema is gone
        assert schemas_named(url.split("schema=")[1] + "_") == []


@pytest.mark.parametrize("backend", BACKENDS)
def test_bench_projections_rebuilds_what_it_generated(
    backend: str, request: pytest.FixtureRequest
) -> None:
    more = []
    if backend == "postgresql":
        more = ["--postgres", str(request.getfixturevalue("pg_schema_url"))]
    args = ["--events", "300", "--rounds", "1", "--lag-rounds", "3", "--stores", backend, *more]
    report = run_script("bench_projections.py", *args)
    generated = report["generate"]["events"]
    result = report[backend]
    assert generated >= 300
    assert result["events"] == generated
    assert result["raw_events_per_s"] > 0
    assert result["rebuild_events_per_s"] > 0
    assert result["ratio"] > 0
    assert len(result["ratio_per_round"]) == 1
    lag = result["lag_ms"]
    assert 0 < lag["p50"] <= lag["p95"] <= lag["max"]
    assert result["rebuild_peak_rss_mb"] > 0


@pytest.mark.postgres
def test_bench_scale_measures_each_process_count_side_by_side(pg_schema_url: str) -> None:
    args = ["--lifecycles", "5", "--rounds", "1", "--processes", "1,2", "--postgres", pg_schema_url]
    result = run_script("bench_scale.py", *args)
    assert set(result) == {"1", "2"}
    for figures in result.values():
        assert figures["engine"] > 0
        assert figures["baseline"] > 0
        assert figures["raw_commit"] > 0
        assert figures["ratio"] == pytest.approx(figures["engine"] / figures["baseline"], rel=0.01)
    assert schemas_named(pg_schema_url.split("schema=")[1] + "_") == []
