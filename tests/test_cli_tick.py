"""`escrow tick`: the scheduler process fires each due deadline once, as a system command."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from escrow.commands import Escrow, ManualClock
from escrow.commands.cli.main import main
from tests.conftest import START
from tests.helpers import order_fields


def test_tick_fires_what_is_due_once(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'x.db'}"
    with Escrow(url, clock=ManualClock(START)) as engine:  # long before today's clock
        engine.run("create_order", order_fields("o1"))
    first = CliRunner().invoke(main, ["tick", "--once", "--store", url], catch_exceptions=False)
    assert first.exit_code == 0, first.output
    assert first.output.strip().endswith("1 deadline(s) fired")
    again = CliRunner().invoke(main, ["--store", url, "tick", "--once"], catch_exceptions=False)
    assert again.output.strip().endswith("0 deadline(s) fired")
    with Escrow(url) as engine:
        order = engine.order("o1")
    assert order.state == "cancelled"


def test_tick_on_a_missing_store_is_a_clear_error(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'no' / 'x.db'}"
    result = CliRunner().invoke(main, ["--store", url, "tick", "--once"])
    assert result.exit_code == 1
    assert "Traceback" not in result.output and "x.db" in result.output
