"""`--store URL` works before and after the subcommand, for every command that uses a store,
and `escrow --version` names the installed version."""

from __future__ import annotations

from importlib.metadata import version
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from escrow.commands.cli.main import main

# Every command that opens a store; the rest (diagram, demo, scenario coverage) never do.
STORE_COMMANDS = [
    ("views", "orders"),
    ("views", "appeals"),
    ("views", "traders"),
    ("views", "ledger"),
    ("projections", "status"),
    ("projections", "rebuild"),
    ("projections", "run"),
    ("audit", "show"),
    ("audit", "diff"),
    ("audit", "timeline"),
    ("audit", "verify"),
    ("audit", "seal"),
    ("audit", "export"),
    ("scenario", "run"),
    ("simulate",),
    ("serve",),
    ("relay",),
    ("relay", "status"),
]


def _leaf(path: tuple[str, ...]) -> click.Command:
    command: click.Command = main
    for name in path:
        assert isinstance(command, click.Group)
        command = command.commands[name]
    return command


def _leaves(command: click.Command, path: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    if isinstance(command, click.Group):
        runs = [path] if command.invoke_without_command else []  # `escrow relay` runs too
        return runs + [p for n, c in command.commands.items() for p in _leaves(c, (*path, n))]
    return [path]


@pytest.mark.parametrize("path", STORE_COMMANDS, ids=" ".join)
def test_every_store_command_takes_store_after_its_name(path: tuple[str, ...]) -> None:
    assert "--store" in [o for p in _leaf(path).params for o in p.opts]


def test_the_list_above_is_every_command_but_those_that_never_open_a_store() -> None:
    never = {("diagram",), ("demo",), ("scenario", "coverage")}
    assert set(_leaves(main)) == set(STORE_COMMANDS) | never


@pytest.fixture
def filled(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'x.db'}"
    result = CliRunner().invoke(main, ["simulate", "--orders", "30", "--seed", "3", "--store", url])
    assert result.exit_code == 0, result.output
    return url


@pytest.mark.parametrize(
    "args",
    [["views", "orders", "--json"], ["audit", "seal"], ["projections", "status", "--json"]],
    ids=" ".join,
)
def test_store_before_and_after_the_subcommand_read_the_same_store(
    filled: str, args: list[str]
) -> None:
    before = CliRunner().invoke(main, ["--store", filled, *args], catch_exceptions=False)
    after = CliRunner().invoke(main, [*args, "--store", filled], catch_exceptions=False)
    assert before.exit_code == after.exit_code == 0, before.output + after.output
    assert after.output == before.output


def test_store_after_the_subcommand_wins_over_the_one_before(filled: str, tmp_path: Path) -> None:
    elsewhere = f"sqlite:///{tmp_path / 'missing.db'}"
    result = CliRunner().invoke(
        main, ["--store", elsewhere, "audit", "seal", "--store", filled], catch_exceptions=False
    )
    assert result.exit_code == 0, result.output
    assert '"events"' in result.output


def test_version_names_the_installed_distribution() -> None:
    result = CliRunner().invoke(main, ["--version"])
    assert result.exit_code == 0
    assert result.output.strip() == f"escrow, version {version('escrow')}"
