"""A short, deterministic run of the coverage-guided fuzzer (tests/fuzz/fuzz_inputs.py) from
the committed seed corpus: it must find nothing. The long campaign and its figures are in
docs/robustness.md."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("atheris")

FUZZ = Path(__file__).resolve().parent / "fuzz"


def test_a_short_fuzz_run_finds_nothing(tmp_path: Path) -> None:
    found = tmp_path / "found"
    found.mkdir()
    run = subprocess.run(
        [
            sys.executable,
            str(FUZZ / "fuzz_inputs.py"),
            str(found),
            str(FUZZ / "corpus"),
            "-seed=1",
            "-runs=20000",
            "-max_total_time=25",
            f"-artifact_prefix={tmp_path}/",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    assert "Done" in run.stderr
    assert not list(tmp_path.glob("crash-*"))


# --- what the fuzzer found, each kept as a regression test ----------------------------------


def test_a_date_yaml_cannot_build_is_a_broken_file() -> None:
    """Found by the fuzzer: YAML's timestamp constructor raised ValueError for 2026-02-30."""
    from escrow.commands.scenarios.format import ScenarioFileError, parse

    with pytest.raises(ScenarioFileError, match="day is out of range"):
        parse("scenario: x\nstart: 2026-02-30\nsteps:\n  - wait: 1m\n")


def test_a_password_in_a_mangled_url_is_masked() -> None:
    """Found by the fuzzer: a URL whose scheme was garbled was echoed with its password."""
    from escrow.errors import ValidationError
    from escrow.store import parse_store_url

    with pytest.raises(ValidationError) as caught:
        parse_store_url("postgre\x01stgres:s3cret@127.0.0.1:5432/t")
    assert "s3cret" not in str(caught.value)
