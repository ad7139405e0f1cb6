"""`scripts/bench_relay.py` at a smoke size: it runs and prints the object the README quotes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.test_relay import nats_ready

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "bench_relay.py"


def test_bench_relay_smoke(pg_schema_url: str) -> None:
    if not nats_ready(3):
        pytest.skip("NATS with JetStream unreachable")
    done = subprocess.run(
        [
            sys.executable,
            str(SCRIPT),
            "--events",
            "300",
            "--seconds",
            "1",
            "--rate",
            "5",
            "--batch",
            "50",
            "--rounds",
            "1",
            "--json",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    result = json.loads(done.stdout)
    assert set(result) == {"events", "relay", "raw", "ratio", "lag_ms"}
    assert set(result["lag_ms"]) == {"p50", "p95"} and result["events"] >= 300
    assert result["relay"] > 0 and result["raw"] > 0
