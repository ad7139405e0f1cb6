"""`escrow scenario run|coverage` and `escrow demo` as a user sees them: exit statuses, what a
broken file or a failed expectation says, JSON output, fresh stores left behind clean."""

from __future__ import annotations

import json
import textwrap
from datetime import datetime
from pathlib import Path

import psycopg
import pytest
from click.testing import CliRunner, Result

from escrow.commands.cli.main import main
from escrow.commands.cli.scenario import library_folder
from escrow.commands.scenarios.format import RULE_IDS, parse
from escrow.commands.scenarios.runner import fresh_store, run_scenario
from tests.conftest import PG_URL

ORDER = (
    '{order: o1, seller: alice, buyer: bob, asset: USDT, amount: "500", price: "0.92", '
    "fiat: EUR, payment_method: bank_transfer}"
)

# The example of scenarios.md, verbatim: the contract's own example must run.
SPEC_EXAMPLE = """\
scenario: Seller appeals, buyer sends no proof within 2 days      # required, one line
rules: [C1]                     # optional: rule IDs this scenario demonstrates
start: 2026-03-01T10:00:00Z     # optional, default 2026-01-01T00:00:00Z; the clock's start
agents: [carol]                 # customer-service agents; any other name is a trader
policy:                         # optional overrides of the policy defaults in rules.md
  payment_window: 30m
steps:
  - create_order: {order: o1, seller: alice, buyer: bob, asset: USDT, amount: "500",
                   price: "0.92", fiat: EUR, payment_method: bank_transfer, instant: false}
  - mark_paid: {order: o1, by: bob}
  - wait: 20m
  - open_appeal: {order: o1, by: alice, reason: payment_not_received, appeal: a1}
  - start_review: {appeal: a1, by: carol}
  - request_payment_proof: {appeal: a1, by: carol}
  - wait: 2d
  - expect: {order: o1, state: cancelled}
  - expect: {appeal: a1, state: resolved, outcome: cancel}
  - release: {order: o1, by: alice}
    error: invalid_state
"""


def write(folder: Path, name: str, steps: str, head: str = "scenario: test\n") -> Path:
    path = folder / name
    path.write_text(head + "agents: [carol]\nsteps:\n" + textwrap.dedent(steps), encoding="utf-8")
    return path


def run(*args: str) -> Result:
    return CliRunner().invoke(main, ["scenario", "run", *args])


def test_the_example_of_the_spec_passes(tmp_path: Path) -> None:
    path = tmp_path / "example.yaml"
    path.write_text(SPEC_EXAMPLE, encoding="utf-8")
    outcome = run(str(path))
    assert outcome.exit_code == 0, outcome.output
    assert "PASS" in outcome.output
    assert "1 scenario file(s): 1 passed" in outcome.output


# --- files that are not valid scenarios: exit 2, naming the step and the field ---------------

BROKEN = {
    "unknown_command": (
        f"  - create_order: {ORDER}\n  - relase: {{order: o1, by: alice}}\n",
        ["step 2", "field relase", "unknown command 'relase'", "did you mean release"],
    ),
    "missing_field": (
        f"  - create_order: {ORDER}\n  - mark_paid: {{order: o1}}\n",
        ["step 2", "field mark_paid.by", "required"],
    ),
    "float_amount_even_with_error": (
        "  - create_order: {order: o1, seller: alice, buyer: bob, asset: USDT, amount: 0.1,\n"
        '                   price: "1", fiat: EUR, payment_method: bank}\n'
        "    error: validation_error\n",
        ["step 1", "field create_order.amount", "float", '"0.1"'],
    ),
    "float_in_an_optional_amount": (
        f"  - create_order: {ORDER}\n  - mark_paid: {{order: o1, by: bob, paid_amount: 460.5}}\n",
        ["step 2", "field mark_paid.paid_amount", "float"],
    ),
    "bad_duration": (
        f"  - create_order: {ORDER}\n  - wait: 15 minutes\n",
        ["step 2", "field wait", "bad duration", "15 minutes"],
    ),
    "number_as_duration": (
        "  - wait: 30\n",
        ["step 1", "field wait", "bad duration"],
    ),
    "yaml_syntax_error": (
        f"  - create_order: {ORDER}\n  - mark_paid: {{order: o1, by: bob\n  - wait: 1m\n",
        ["YAML syntax error", ".yaml:"],
    ),
    "unknown_expectation_field": (
        f"  - create_order: {ORDER}\n  - expect: {{order: o1, status: paid}}\n",
        ["step 2", "field expect.status", "unknown expectation field 'status'"],
    ),
    "unknown_state_in_expectation": (
        f"  - create_order: {ORDER}\n  - expect: {{order: o1, state: complete}}\n",
        ["step 2", "field expect.state", "'complete'"],
    ),
    "expectation_without_target": (
        "  - expect: {state: paid}\n",
        ["step 1", "field expect", "exactly one of order, appeal, trader, ledger"],
    ),
    "float_in_ledger_expectation": (
        "  - expect: {ledger: USDT, in_escrow: 0.5}\n",
        ["step 1", "field expect.in_escrow", "float"],
    ),
    "two_commands_in_one_step": (
        f"  - create_order: {ORDER}\n    mark_paid: {{order: o1, by: bob}}\n",
        ["step 1", "exactly one command", "create_order, mark_paid"],
    ),
    "unknown_error_code": (
        f"  - create_order: {ORDER}\n  - release: {{order: o1, by: alice}}\n    error: invalid\n",
        ["step 2", "field error", "unknown error code 'invalid'", "invalid_state"],
    ),
    "error_on_a_wait": (
        "  - wait: 1m\n    error: invalid_state\n",
        ["step 1", "field error", "belongs to a command step"],
    ),
    "fields_not_a_mapping": (
        "  - release: o1\n",
        ["step 1", "field release", "mapping"],
    ),
    "key_given_twice": (
        "  - release: {order: o1, by: alice, by: bob}\n",
        ["given twice", "'by'"],
    ),
}


@pytest.mark.parametrize("kind", list(BROKEN))
def test_a_broken_file_exits_2_naming_step_and_field(tmp_path: Path, kind: str) -> None:
    steps, fragments = BROKEN[kind]
    path = tmp_path / f"{kind}.yaml"
    path.write_text("scenario: broken\nagents: [carol]\nsteps:\n" + steps, encoding="utf-8")
    outcome = run(str(path))
    assert outcome.exit_code == 2, outcome.output
    assert "INVALID" in outcome.output
    assert str(path) in outcome.output
    for fragment in fragments:
        assert fragment in outcome.output, f"{fragment!r} not in:\n{outcome.output}"
    assert "Traceback" not in outcome.output


HEADER_MISTAKES = {
    "no_name": ("steps:\n  - wait: 1m\n", "field scenario"),
    "no_steps": ("scenario: nothing\n", "field steps"),
    "unknown_top_level_key": ("scenario: x\nsteps: [{wait: 1m}]\nagent: [carol]\n", "field agent"),
    "unknown_rule_id": ("scenario: x\nrules: [O8]\nsteps: [{wait: 1m}]\n", "field rules.0"),
    "unknown_policy_field": (
        "scenario: x\npolicy: {payment_windw: 30m}\nsteps: [{wait: 1m}]\n",
        "field policy.payment_windw",
    ),
    "float_policy_limit": (
        "scenario: x\npolicy: {price_deviation_limit: 0.2}\nsteps: [{wait: 1m}]\n",
        "field policy.price_deviation_limit",
    ),
    "bad_start": ("scenario: x\nstart: yesterday\nsteps: [{wait: 1m}]\n", "field start"),
    "not_a_mapping": ("- wait: 1m\n", "a scenario is a mapping"),
    "empty": ("", "not empty"),
}


@pytest.mark.parametrize("kind", list(HEADER_MISTAKES))
def test_a_broken_header_exits_2_naming_the_field(tmp_path: Path, kind: str) -> None:
    text, fragment = HEADER_MISTAKES[kind]
    path = tmp_path / f"{kind}.yaml"
    path.write_text(text, encoding="utf-8")
    outcome = run(str(path))
    assert outcome.exit_code == 2, outcome.output
    assert fragment in outcome.output
    assert "Traceback" not in outcome.output


def test_every_problem_of_a_file_is_reported_at_once(tmp_path: Path) -> None:
    path = write(tmp_path, "many.yaml", "  - relase: {order: o1}\n  - wait: soon\n")
    outcome = run(str(path))
    assert outcome.exit_code == 2
    assert "step 1" in outcome.output and "step 2" in outcome.output


def test_a_step_that_expects_its_validation_error_is_valid(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "refused.yaml",
        f"""\
        - create_order: {ORDER}
        - mark_paid: {{order: o1}}
          error: validation_error
        - wait: 10m
        - create_order: {{order: o2, seller: alice, buyer: bob, asset: usdt, amount: "5",
                         price: "1", fiat: EUR, payment_method: bank, payment_window: 5x}}
          error: any
        - expect: {{order: o1, state: awaiting_payment}}
        """,
    )
    outcome = run(str(path))
    assert outcome.exit_code == 0, outcome.output


def test_a_command_whose_fields_are_wrong_fails_when_another_code_is_expected(
    tmp_path: Path,
) -> None:
    path = write(tmp_path, "other.yaml", "  - mark_paid: {order: o1}\n    error: not_found\n")
    outcome = run(str(path))
    assert outcome.exit_code == 1, outcome.output
    assert "expected: refused with not_found" in outcome.output
    assert "found:    refused: validation_error" in outcome.output


# --- expectations that fail: exit 1, saying what was expected and found ----------------------


def test_a_wrong_expectation_exits_1_with_expected_and_found(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "wrong.yaml",
        f"""\
        - create_order: {ORDER}
        - mark_paid: {{order: o1, by: bob}}
        - expect: {{order: o1, state: completed, escrow: locked}}
        - release: {{order: o1, by: alice}}
        """,
    )
    outcome = run(str(path))
    assert outcome.exit_code == 1, outcome.output
    out = outcome.output
    assert "FAIL" in out
    assert f"{path}:6, step 3:" in out
    assert "expect: {order: o1, state: completed, escrow: locked}" in out
    assert "expected: order o1 with state: completed, escrow: locked" in out
    assert "found:    state: paid, escrow: locked" in out
    assert "0 passed, 1 failed" in out


@pytest.mark.parametrize(
    ("steps", "expected", "found"),
    [
        (
            "  - release: {order: o1, by: alice}\n",
            "expected: accepted",
            "found:    refused: not_found",
        ),
        (
            f"  - create_order: {ORDER}\n  - cancel_order: {{order: o1, by: bob}}\n"
            "    error: invalid_state\n",
            "expected: refused with invalid_state",
            "found:    accepted (recorded order o1 Cancelled",
        ),
        (
            f"  - create_order: {ORDER}\n  - release: {{order: o1, by: bob}}\n"
            "    error: invalid_state\n",
            "expected: refused with invalid_state",
            "found:    refused: not_authorized",
        ),
        (
            "  - expect: {appeal: a9, state: open}\n",
            "expected: appeal a9 to exist",
            "found:    not_found",
        ),
        (
            f'  - create_order: {ORDER}\n  - expect: {{ledger: USDT, in_escrow: "499.99"}}\n',
            "expected: ledger USDT with in_escrow: 499.99",
            "found:    in_escrow: 500",
        ),
        (
            "  - apply_sanction: {trader: bob, by: carol, kind: partial_ban}\n"
            "  - expect: {trader: bob, can_trade: true, sanctions: [partial_ban, p2p_suspension]}\n",
            "expected: trader bob with can_trade: true, sanctions: [p2p_suspension, partial_ban]",
            "found:    can_trade: false, sanctions: [partial_ban]",
        ),
    ],
    ids=["refused", "accepted", "other_code", "missing", "ledger", "trader"],
)
def test_each_kind_of_failure_says_expected_and_found(
    tmp_path: Path, steps: str, expected: str, found: str
) -> None:
    outcome = run(str(write(tmp_path, "f.yaml", steps)))
    assert outcome.exit_code == 1, outcome.output
    assert expected in outcome.output
    assert found in outcome.output


def test_a_run_stops_at_the_first_failing_step() -> None:
    scenario = parse(
        f"scenario: x\nsteps:\n  - release: {{order: o1, by: alice}}\n  - create_order: {ORDER}\n",
        "x.yaml",
    )
    result = run_scenario(scenario)
    assert not result.passed
    assert (result.steps_run, result.steps) == (1, 2)


def test_error_any_accepts_any_refusal_and_sanctions_compare_as_a_set(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "any.yaml",
        f"""\
        - create_order: {ORDER}
        - release: {{order: o1, by: mallory}}
          error: any
        - release: {{order: o9, by: alice}}
          error: any
        - open_appeal: {{order: o1, by: alice, reason: bank_account_frozen, appeal: a1}}
          error: appeal_not_allowed
        - apply_sanction: {{trader: bob, by: carol, kind: partial_ban}}
        - apply_sanction: {{trader: bob, by: carol, kind: permanent_suspension}}
        - expect: {{trader: bob, can_trade: false,
                    sanctions: [permanent_suspension, partial_ban, partial_ban]}}
        """,
    )
    outcome = run(str(path))
    assert outcome.exit_code == 0, outcome.output


def test_an_invalid_file_wins_over_a_failing_one(tmp_path: Path) -> None:
    write(tmp_path, "a_fails.yaml", "  - release: {order: o1, by: alice}\n")
    write(tmp_path, "b_invalid.yaml", "  - relase: {order: o1, by: alice}\n")
    write(tmp_path, "c_passes.yaml", "  - wait: 1m\n")
    outcome = run(str(tmp_path))
    assert outcome.exit_code == 2, outcome.output
    assert "1 passed, 1 failed, 1 invalid" in outcome.output


def test_a_folder_without_scenarios_is_not_a_pass(tmp_path: Path) -> None:
    outcome = run(str(tmp_path))
    assert outcome.exit_code == 2
    assert "no scenario files" in outcome.output


# --- output -----------------------------------------------------------------------------------


def test_json_prints_one_result_per_scenario(tmp_path: Path) -> None:
    write(tmp_path, "a.yaml", f"  - create_order: {ORDER}\n", head="scenario: first\nrules: [O1]\n")
    write(tmp_path, "b.yaml", "  - expect: {order: o1, state: paid}\n")
    write(tmp_path, "c.yaml", "  - wait: forever\n")
    outcome = run("--json", str(tmp_path))
    assert outcome.exit_code == 2
    lines = [json.loads(line) for line in outcome.output.splitlines()]
    assert [r["status"] for r in lines] == ["pass", "fail", "invalid"]
    assert lines[0]["scenario"] == "first" and lines[0]["rules"] == ["O1"]
    assert lines[1]["failure"]["step"] == 1
    assert lines[1]["failure"]["expected"] == "order o1 to exist"
    assert lines[2]["problems"][0]["step"] == 1
    assert lines[2]["problems"][0]["field"] == "wait"


def test_verbose_prints_every_step_with_its_events(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "v.yaml",
        f"""\
        - create_order: {ORDER}
        - wait: 15m
        - expect: {{order: o1, state: cancelled}}
        """,
    )
    outcome = run("-v", str(path))
    assert outcome.exit_code == 0, outcome.output
    out = outcome.output
    assert "step 1" in out and "step 2" in out and "step 3" in out
    assert "order o1 v1 Created [O1] by platform" in out
    assert "order o1 v2 Cancelled [O3] by system" in out


def test_wait_fires_each_deadline_at_its_own_due_time(tmp_path: Path) -> None:
    """A long wait behaves like a punctual scheduler: history shows the deadline's time."""
    path = write(
        tmp_path,
        "t.yaml",
        f"""\
        - create_order: {ORDER}
        - wait: 3d
        """,
        head="scenario: t\nstart: 2026-03-01T10:00:00Z\n",
    )
    outcome = run("--json", "-v", str(path))
    result = json.loads(outcome.output)
    cancelled = result["trace"][1]["events"][0]
    assert cancelled["event"] == "Cancelled"
    assert datetime.fromisoformat(cancelled["at"]) == datetime.fromisoformat(
        "2026-03-01T10:15:00+00:00"
    )


# --- fresh stores -----------------------------------------------------------------------------


def test_each_scenario_gets_a_fresh_sqlite_file_removed_afterwards(tmp_path: Path) -> None:
    folder = tmp_path / "scenarios"
    folder.mkdir()
    for name in ("one.yaml", "two.yaml"):  # the same ids twice: they must not meet
        write(
            folder,
            name,
            f'  - create_order: {ORDER}\n  - expect: {{ledger: USDT, in_escrow: "500"}}\n',
        )
    store = tmp_path / "store"
    store.mkdir()
    outcome = run("--store", f"sqlite:///{store / 'escrow.db'}", str(folder))
    assert outcome.exit_code == 0, outcome.output
    assert list(store.iterdir()) == []


def test_the_global_store_option_is_used_when_given(tmp_path: Path) -> None:
    write(tmp_path, "one.yaml", f"  - create_order: {ORDER}\n")
    store = tmp_path / "store"
    store.mkdir()
    outcome = CliRunner().invoke(
        main,
        ["--store", f"sqlite:///{store / 'x.db'}", "scenario", "run", str(tmp_path / "one.yaml")],
    )
    assert outcome.exit_code == 0, outcome.output
    assert list(store.iterdir()) == []


def test_a_missing_sqlite_folder_is_reported_without_a_traceback(tmp_path: Path) -> None:
    path = write(tmp_path, "one.yaml", "  - wait: 1m\n")
    outcome = run("--store", f"sqlite:///{tmp_path / 'nowhere' / 'x.db'}", str(path))
    assert outcome.exit_code == 3
    assert "no folder" in outcome.output
    assert "Traceback" not in outcome.output


def test_an_unknown_store_url_is_a_usage_error(tmp_path: Path) -> None:
    outcome = run("--store", "mysql://db", str(write(tmp_path, "one.yaml", "  - wait: 1m\n")))
    assert outcome.exit_code == 2
    assert "unknown store URL" in outcome.output


def test_each_scenario_gets_a_fresh_postgres_schema_dropped_afterwards(pg_schema_url: str) -> None:
    def exists(schema: str) -> bool:
        with psycopg.connect(PG_URL.split("?")[0]) as conn:
            row = conn.execute(
                "SELECT count(*) FROM information_schema.schemata WHERE schema_name = %s",
                [schema],
            ).fetchone()
            return bool(row and row[0])

    with fresh_store(PG_URL) as url:
        schema = url.rsplit("schema=", 1)[1]
        assert schema.startswith("scenario_") and exists(schema)
        result = run_scenario(
            parse(f"scenario: x\nsteps:\n  - create_order: {ORDER}\n"), url, False
        )
        assert result.passed
    assert not exists(schema)


# --- coverage and demo ------------------------------------------------------------------------


def test_coverage_lists_uncovered_rules_and_exits_1(tmp_path: Path) -> None:
    write(tmp_path, "a.yaml", "  - wait: 1m\n", head="scenario: a\nrules: [O1, S4]\n")
    outcome = CliRunner().invoke(main, ["scenario", "coverage", str(tmp_path)])
    assert outcome.exit_code == 1
    uncovered = outcome.output.split("uncovered rule IDs:")[1]
    assert "O2" in uncovered and "B1a" in uncovered
    assert "O1," not in uncovered and "S4" not in uncovered


def test_coverage_of_an_invalid_file_exits_2(tmp_path: Path) -> None:
    write(tmp_path, "a.yaml", "  - wait: 1m\n", head="scenario: a\nrules: [Z9]\n")
    outcome = CliRunner().invoke(main, ["scenario", "coverage", str(tmp_path)])
    assert outcome.exit_code == 2
    assert "not a rule ID" in outcome.output


def test_demo_finds_the_shipped_library() -> None:
    folder = library_folder()
    assert folder == Path(__file__).resolve().parent.parent / "scenarios"
    assert len(list(folder.glob("*.yaml"))) >= 38


def test_demo_runs_a_library_on_sqlite_and_prints_a_summary(tmp_path: Path) -> None:
    write(
        tmp_path,
        "creates_an_order.yaml",
        f"  - create_order: {ORDER}\n",
        head="scenario: c\nrules: [O1]\n",
    )
    write(tmp_path, "waits_a_minute.yaml", "  - wait: 1m\n", head="scenario: w\nrules: [O3]\n")
    outcome = CliRunner().invoke(main, ["demo", "--folder", str(tmp_path)])
    assert outcome.exit_code == 0, outcome.output
    assert "creates_an_order" in outcome.output and "waits_a_minute" in outcome.output
    assert "2 scenario file(s): 2 passed" in outcome.output
    assert f"rule IDs covered: 2/{len(RULE_IDS)}" in outcome.output
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "creates_an_order.yaml",
        "waits_a_minute.yaml",
    ]
