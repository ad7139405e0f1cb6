"""scripts/bench_http.py at a smoke size, as a user starts it: its --json has the shape the
README's table is read from, and it leaves no schema behind."""

from __future__ import annotations

import pytest

from tests.test_scripts import run_script, schemas_named

FIGURES = {"http", "in_process", "ratio", "p50_ms", "p99_ms"}
COMMANDS = {"create_order", "mark_paid", "release"}


def check(figures: dict[str, object]) -> None:
    assert set(figures) >= FIGURES
    for key in ("http", "in_process", "ratio"):
        value = figures[key]
        assert isinstance(value, float) and value > 0
    for key in ("p50_ms", "p99_ms"):
        latencies = figures[key]
        assert isinstance(latencies, dict) and set(latencies) == COMMANDS


def test_bench_http_on_sqlite() -> None:
    result = run_script("bench_http.py", "--lifecycles", "6", "--rounds", "1", "--stores", "sqlite")
    assert set(result) == {"sqlite"}
    check(result["sqlite"])


@pytest.mark.postgres
def test_bench_http_on_postgresql_with_one_and_two_workers(pg_schema_url: str) -> None:
    args = ["--lifecycles", "6", "--rounds", "1", "--stores", "postgresql"]
    result = run_script("bench_http.py", *args, "--postgres", pg_schema_url)["postgresql"]
    check(result)
    check(result["workers_2"])
    assert schemas_named(pg_schema_url.split("schema=")[1] + "_") == []
