"""Times and durations have bounds (README, "Input limits"), so no clock arithmetic can
overflow: out of bounds is a validation error naming the field, in scenario files (exit 2,
naming the file, step and field), on the command line and in the Python API."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from escrow.clock import LATEST
from escrow.commands import Escrow, ManualClock
from escrow.commands.cli.main import main
from escrow.commands.scenarios.format import ScenarioFileError, parse
from escrow.errors import ValidationError
from escrow.policy import Policy
from tests.helpers import order_fields


def problems(text: str) -> list[tuple[int | None, str | None, str]]:
    with pytest.raises(ScenarioFileError) as caught:
        parse(text, "bounds.yaml")
    return [(p.step, p.field, p.message) for p in caught.value.problems]


@pytest.mark.parametrize("wait", ["99999999d", "3651d", "87601h", "9" * 70 + "s", "1" * 5000 + "d"])
def test_a_wait_beyond_the_longest_is_a_broken_file(wait: str) -> None:
    [(step, field, message)] = problems(f"scenario: x\nsteps:\n  - wait: 1m\n  - wait: {wait}\n")
    assert (step, field) == (2, "wait")
    assert "too long" in message or "longest" in message


def test_waits_that_add_up_past_the_latest_time_name_the_step() -> None:
    steps = "".join("  - wait: 3650d\n" for _ in range(800))
    [(step, field, message)] = problems(
        f"scenario: x\nstart: 2026-01-01T00:00:00Z\nsteps:\n{steps}"
    )
    assert field == "wait" and step is not None and 600 < step < 800
    assert "9000-01-01" in message


@pytest.mark.parametrize(
    "start", ["0001-01-01T00:00:00+05:00", "9999-12-31T23:59:59-05:00", "1969-12-31T23:59:59Z"]
)
def test_a_start_out_of_range_is_a_broken_file(start: str) -> None:
    [(_, field, message)] = problems(f"scenario: x\nstart: {start}\nsteps:\n  - wait: 1m\n")
    assert field == "start" and "outside" in message


def test_the_cli_exits_2_naming_the_file_step_and_field(tmp_path: Path) -> None:
    path = tmp_path / "far.yaml"
    path.write_text("scenario: far\nsteps:\n  - wait: 99999999d\n")
    result = CliRunner().invoke(main, ["scenario", "run", str(path)])
    assert result.exit_code == 2
    assert f"{path}:3, step 1, field wait" in result.output
    assert "Traceback" not in result.output


@pytest.mark.parametrize(
    ("args", "option"),
    [
        (["views", "appeals", "--at", "0001-01-01T00:00:00+05:00"], "--at"),
        (["views", "traders", "--at", "9999-12-31T23:00:00Z"], "--at"),
        (["views", "appeals", "--at", "2026-03-01T10:00:00"], "--at"),
        (["views", "appeals", "--older-than", "99999999d"], "--older-than"),
    ],
)
def test_cli_times_out_of_range_are_usage_errors(args: list[str], option: str) -> None:
    result = CliRunner().invoke(main, ["--store", "memory:", *args])
    assert result.exit_code == 2, result.output
    assert option in result.output and "Traceback" not in result.output


def test_policy_durations_and_per_order_windows_keep_their_bounds() -> None:
    with pytest.raises(ValidationError, match="payment_window: a policy duration is at most 3650d"):
        Policy(payment_window="3651d")  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match=r"partial_ban_durations\.1: .*3650d"):
        Policy(partial_ban_durations=["1d", "99999999d"])  # type: ignore[list-item]


BAD_QUERIES: list[tuple[str, dict[str, Any]]] = [
    ("orders", {"limit": -1}),
    ("orders", {"limit": 10**20}),
    ("orders", {"limit": True}),
    ("orders", {"state": 5}),
    ("appeal_queue", {"older_than": "99999999d"}),
    ("appeal_queue", {"older_than": timedelta(days=-1)}),
    ("appeal_queue", {"at": datetime(1, 1, 1, tzinfo=timezone(timedelta(hours=5)))}),
    ("appeal_queue", {"at": datetime(2026, 3, 1)}),
    ("traders", {"at": datetime.max.replace(tzinfo=UTC)}),
    ("traders", {"sort": ["name"]}),
    ("trader_stats", {"name": "bob", "at": datetime(1, 1, 1, tzinfo=UTC)}),
    ("trader", {"name": "bob", "at": datetime(9999, 1, 1, tzinfo=UTC)}),
    ("order", {"ref": 5}),
    ("appeal", {"ref": None}),
    ("ledger", {"asset": ["USDT"]}),
    ("ledger_lines", {"limit": 0}),
    ("allowed", {"actor": None, "order": "o1"}),
    ("tick", {"now": datetime(9999, 12, 31, tzinfo=UTC)}),
    ("tick", {"now": datetime(2026, 3, 1)}),
]


@pytest.mark.parametrize(("query", "args"), BAD_QUERIES, ids=[q for q, _ in BAD_QUERIES])
def test_api_queries_refuse_bad_arguments(engine: Escrow, query: str, args: dict[str, Any]) -> None:
    engine.run("create_order", order_fields("o1"))
    with pytest.raises(ValidationError):
        getattr(engine, query)(**args)


def test_the_clock_never_passes_the_latest_time() -> None:
    clock = ManualClock(datetime(8999, 12, 31, tzinfo=UTC))
    with pytest.raises(ValidationError, match="9000-01-01"):
        clock.advance(timedelta(days=2))
    assert clock.now() < LATEST
    with pytest.raises(ValidationError, match="clock start"):
        ManualClock(datetime(9999, 1, 1, tzinfo=UTC))


@pytest.mark.parametrize(
    "kwargs",
    [
        {"policy": {"payment_window": "1h"}},
        {"agents": ("carol",)},  # staff are appointed by command, never by argument
        {"recent_streams": -1},
    ],
)
def test_api_constructor_refuses_bad_arguments(kwargs: dict[str, Any]) -> None:
    with pytest.raises((ValidationError, TypeError)):
        Escrow("memory:", **kwargs)
