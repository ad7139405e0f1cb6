"""The shipped scenario library: every file passes on memory, SQLite and PostgreSQL, together
it covers every rule ID of rules.md, and docs/scenarios.md indexes it."""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from escrow.commands.cli.main import main
from escrow.commands.scenarios.format import RULE_IDS, load
from escrow.commands.scenarios.runner import run_scenario

ROOT = Path(__file__).resolve().parent.parent
LIBRARY = ROOT / "scenarios"
FILES = sorted(LIBRARY.glob("*.yaml"))
STORIES = (
    "b1_buyer_appeal_ends_with_release.yaml",
    "c1_seller_appeal_times_out.yaml",
    "b3_overpayment_partial_refund.yaml",
    "b2_refund_refused_seller_suspended.yaml",
    "c4_bank_freeze_permanent_suspension.yaml",
    "a4_appeal_cancelled_and_reopened.yaml",
    "a3_second_appeal_on_a_resolved_issue.yaml",
)


@pytest.mark.parametrize("path", FILES, ids=[p.stem for p in FILES])
def test_library_scenario_passes(path: Path, store_url: str) -> None:
    result = run_scenario(load(path), store_url, fresh=False)
    failure = result.failure
    assert failure is None, (
        f"step {failure.step}: {failure.text}\nexpected {failure.expected}\nfound {failure.found}"
    )
    assert result.steps_run == result.steps


def test_every_rule_id_is_covered_by_the_library() -> None:
    covered = {rule for path in FILES for rule in load(path).rules}
    assert [r for r in RULE_IDS if r not in covered] == []
    outcome = CliRunner().invoke(main, ["scenario", "coverage", str(LIBRARY)])
    assert outcome.exit_code == 0, outcome.output
    assert f"every one of the {len(RULE_IDS)} rule IDs is covered" in outcome.output


def test_the_end_to_end_stories_are_in_the_library() -> None:
    assert [s for s in STORIES if not (LIBRARY / s).is_file()] == []


def test_the_whole_library_runs_in_memory_within_ten_seconds() -> None:
    started = time.perf_counter()
    outcome = CliRunner().invoke(main, ["scenario", "run", str(LIBRARY)])
    seconds = time.perf_counter() - started
    assert outcome.exit_code == 0, outcome.output
    assert f"{len(FILES)} scenario file(s): {len(FILES)} passed" in outcome.output
    assert seconds < 10, f"the library took {seconds:.1f} s in memory"


def test_docs_index_lists_every_library_file_with_its_rules() -> None:
    docs = (ROOT / "docs" / "scenarios.md").read_text(encoding="utf-8")
    rows = dict(re.findall(r"^\| `([\w.]+\.yaml)` \| ([^|]*) \|", docs, flags=re.MULTILINE))
    for path in FILES:
        assert path.name in rows, f"{path.name} is missing from the index in docs/scenarios.md"
        assert rows[path.name].split() == list(load(path).rules), path.name
    assert set(rows) <= {p.name for p in FILES}, "the index lists files that do not exist"
