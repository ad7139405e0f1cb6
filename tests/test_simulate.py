"""`simulate`: a seeded workload that is reproducible, covers the whole rulebook, leaves a store
whose invariants hold, and records exactly the events it reports."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest
from click.testing import CliRunner

from escrow.clock import ManualClock, SystemClock
from escrow.commands.api import Escrow
from escrow.commands.cli.main import main
from escrow.commands.simulation.simulate import (
    AGENTS,
    SimulationError,
    Summary,
    simulate,
    simulation_engine,
)
from tests.helpers import event_count, staffed

REASONS = {"B1", "B2", "B3", "B4", "B5", "C1", "C2", "C3", "C4", "C5", "C6"}


def run(orders: int, seed: int, store: str = "memory:") -> tuple[Summary, Escrow]:
    engine = simulation_engine(store)
    return simulate(engine, orders, seed), engine


@pytest.fixture(scope="module")
def big() -> tuple[Summary, Escrow]:
    summary, engine = run(400, seed=11)
    yield summary, engine
    engine.close()


def test_the_same_seed_gives_the_same_summary() -> None:
    first, e1 = run(80, seed=3)
    second, e2 = run(80, seed=3)
    other, e3 = run(80, seed=4)
    for engine in (e1, e2, e3):
        engine.close()
    assert first.counts() == second.counts()
    assert first.counts() != other.counts()


def test_the_mix_covers_every_ending(big: tuple[Summary, Escrow]) -> None:
    summary, _ = big
    assert summary.final_states["completed"] > summary.final_states["cancelled"] > 0
    assert summary.final_states["completed"] > summary.orders / 2
    reasons = {reason.split()[0] for reason, _ in summary.appeals}
    assert reasons == REASONS
    endings = {ending for _, ending in summary.appeals}
    assert {"resolved: release", "resolved: cancel", "resolved: none", "withdrawn"} <= endings
    appealed = sum(summary.appeals.values())
    assert summary.orders * 0.2 < appealed < summary.orders * 0.6
    assert (
        {
            "expire_payment_window",
            "expire_payment_proof",
            "close_freeze_window",
            "expire_sanctions",
        }
        <= set(summary.deadlines_fired)
        <= {
            "expire_payment_window",
            "expire_payment_proof",
            "close_freeze_window",
            "expire_sanctions",
            "mark_complaint_overdue",  # complaints are rare: 400 orders may see none overdue
        }
    )
    assert set(summary.sanctions_applied) == {
        "p2p_suspension",
        "trading_suspension_24h",
        "partial_ban",
        "permanent_suspension",
    }
    assert summary.sanctions_lifted["p2p_suspension"] > 0
    assert {"release_blocked_by_appeal", "price_deviation", "deadline_passed"} <= set(
        summary.refusals
    )


def test_invariants_hold_after_a_simulation(big: tuple[Summary, Escrow]) -> None:
    summary, engine = big
    for asset, locked in summary.locked.items():
        ledger = engine.ledger(asset)
        assert ledger.in_escrow + ledger.released + ledger.returned == locked, asset
        assert min(ledger.in_escrow, ledger.released, ledger.returned) >= 0
    states: dict[str, int] = {}
    for n in range(summary.orders):
        try:
            order = engine.order(f"s11-o{n}")
        except Exception:
            continue  # an O7 attempt: refused, never created
        states[order.state] = states.get(order.state, 0) + 1
        settled = {
            "completed": (order.amount, Decimal(0)),
            "cancelled": (Decimal(0), order.amount),
        }.get(order.state, (Decimal(0), Decimal(0)))
        assert order.escrow.locked == order.amount
        assert (order.escrow.released, order.escrow.returned) == settled
        if order.state in ("completed", "cancelled", "paid", "awaiting_payment"):
            assert order.open_appeal is None
        for ref in order.appeals:
            appeal = engine.appeal(ref)
            assert (appeal.outcome is not None) == (appeal.state == "resolved")
    assert {s: n for s, n in summary.final_states.items() if s in states} == states


def test_the_events_reported_are_the_events_stored(store_url: str) -> None:
    engine = staffed(Escrow(store_url, clock=ManualClock(datetime(2026, 1, 1, tzinfo=UTC))), AGENTS)
    try:
        progress: list[tuple[int, int]] = []
        staffing = event_count(engine)  # the agents' appointments, before the simulation
        summary = simulate(engine, 15, seed=2, progress=lambda d, e: progress.append((d, e)))
        assert summary.events == event_count(engine) - staffing
        assert [d for d, _ in progress] == list(range(1, 16))
        assert [e for _, e in progress] == sorted(e for _, e in progress)
        assert sum(summary.final_states.values()) == 15
    finally:
        engine.close()


def test_simulating_a_seed_twice_on_one_store_is_refused() -> None:
    summary, engine = run(5, seed=9)
    try:
        with pytest.raises(SimulationError, match="already holds order s9-o0"):
            simulate(engine, 5, seed=9)
        assert summary.orders == 5
    finally:
        engine.close()


def test_simulate_needs_a_manual_clock_and_agents() -> None:
    with (
        staffed(Escrow("memory:", clock=SystemClock()), AGENTS) as engine,
        pytest.raises(TypeError),
    ):
        simulate(engine, 1, seed=1)
    clock = ManualClock(datetime(2026, 1, 1, tzinfo=UTC))
    with Escrow("memory:", clock=clock) as engine, pytest.raises(ValueError, match="agent"):
        simulate(engine, 1, seed=1)


def test_the_command_prints_a_summary_and_matches_the_function() -> None:
    outcome = CliRunner().invoke(
        main, ["simulate", "--orders", "40", "--seed", "5", "--store", "memory:", "--settle"]
    )
    assert outcome.exit_code == 0, outcome.output
    for title in ("Orders by final state", "Appeals by reason and ending", "events/s"):
        assert title in outcome.output
    as_json = CliRunner().invoke(
        main,
        ["simulate", "--orders", "40", "--seed", "5", "--store", "memory:", "--json", "--settle"],
    )
    assert as_json.exit_code == 0, as_json.output
    reported = json.loads(as_json.stdout)
    expected, engine = run(40, seed=5)
    engine.close()
    reported.pop("seconds")
    reported.pop("rate")
    assert reported == expected.counts()


def test_by_default_the_command_leaves_orders_in_flight_for_the_views(tmp_path: Path) -> None:
    """It stops when the last order arrives: open appeals and unpaid orders stay, and the
    views read the store at its last event's time, so the 30-day figures are current."""
    store = ["--store", f"sqlite:///{tmp_path / 'sim.db'}"]
    runner = CliRunner()
    done = runner.invoke(main, [*store, "simulate", "--orders", "300", "--seed", "4", "--json"])
    assert done.exit_code == 0, done.output
    summary = json.loads(done.stdout)
    states = summary["final_states"]
    assert summary["in_flight"] > 0 and states["in_appeal"] > 0
    assert states.get("awaiting_payment", 0) + states.get("paid", 0) > 0
    assert sum(states.values()) == 300
    in_appeal = runner.invoke(main, [*store, "views", "orders", "--state", "in_appeal", "--json"])
    assert len(json.loads(in_appeal.stdout)) == states["in_appeal"]
    traders = json.loads(runner.invoke(main, [*store, "views", "traders", "--json"]).stdout)
    assert any(t["completion_rate_30d"] is not None for t in traders)
    at_end = summary["simulated_until"]
    shown = runner.invoke(main, [*store, "views", "traders", "--limit", "1"]).stdout
    assert f"traders at {at_end[:10]} {at_end[11:16]} UTC" in shown
    later = [*store, "views", "traders", "--json", "--at", "2030-01-01T00:00:00Z"]
    assert all(
        t["completion_rate_30d"] is None for t in json.loads(runner.invoke(main, later).stdout)
    )
    assert runner.invoke(main, [*store, "views", "appeals", "--at", "now"]).exit_code == 0
