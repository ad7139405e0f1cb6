"""A short soak: two workers on one PostgreSQL schema, killed and restarted, the projection
runner killed too, PostgreSQL restarted once; nothing acknowledged is lost or recorded twice,
the audit is clean and the read models equal a rebuild (scripts/soak.py says how)."""

from __future__ import annotations

import pytest

from tests.test_scripts import run_script


@pytest.mark.postgres
def test_a_short_soak_loses_nothing_and_duplicates_nothing(pg_schema_url: str) -> None:
    args = ["--workers", "2", "--commands", "3000", "--seconds", "60", "--postgres", pg_schema_url]
    result = run_script("soak.py", *args)
    assert result["workers"] == 2
    assert result["acknowledged"] == result["commands"] == 3000
    assert result["lost"] == 0
    assert result["duplicated"] == 0
    assert result["verify"] == "clean"
    assert result["read_model_mismatches"] == 0
    assert result["kills"] >= 3
    assert result["store_restarts"] == 1
    relayed = result["relay"]  # the relay, killed too, put every event in its stream once
    assert relayed["events"] > 1000
    assert relayed["missing"] == relayed["duplicated"] == relayed["out_of_order"] == 0
