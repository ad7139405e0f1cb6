"""The contracts a caller relies on (issue 19): one error family, a code of its own for a
version clash that kept losing, a typed error after `close()`, bad query arguments named, no
silent in-memory store."""

from __future__ import annotations

import inspect
import json
from datetime import UTC, datetime
from typing import Any

import pytest
from eventsourcing.persistence import IntegrityError

from escrow.commands import EngineClosed, EscrowError, InvalidCommand
from escrow.commands.api import Escrow
from escrow.commands.execution import CommandRunner
from escrow.commands.http.problems import refusal
from escrow.commands.models import CreateOrder, MarkPaid, OpenAppeal, parse_command
from escrow.errors import PRECEDENCE, ConcurrencyConflict, ValidationError
from escrow.policy import Policy
from tests.helpers import event_count, order_fields


def test_the_store_is_required() -> None:
    assert inspect.signature(Escrow).parameters["store"].default is inspect.Parameter.empty
    with pytest.raises(TypeError):
        Escrow()  # type: ignore[call-arg]


@pytest.mark.parametrize(
    "build",
    [
        lambda: CreateOrder(order="o1", seller="alice"),
        lambda: MarkPaid.model_validate({"order": "o1", "by": "bob", "paid": "1"}),
        lambda: MarkPaid.model_validate_json('{"order": 1, "by": "bob"}'),
        lambda: OpenAppeal(order="o1", by="bob", reason="bored", appeal="a1"),
    ],
    ids=["init", "model_validate", "model_validate_json", "literal"],
)
def test_a_command_model_built_with_bad_input_is_an_escrow_error(build: Any) -> None:
    with pytest.raises(InvalidCommand) as caught:
        build()
    assert isinstance(caught.value, EscrowError) and isinstance(caught.value, ValidationError)
    assert caught.value.code == "validation_error" and caught.value.fields


def test_the_fields_are_named() -> None:
    with pytest.raises(InvalidCommand) as caught:
        CreateOrder(**order_fields(amount="0.1", price=1.5))
    assert [f for f, _ in caught.value.fields] == ["price"]
    with pytest.raises(InvalidCommand) as parsed:
        parse_command("mark_paid", {"order": "o1"})
    assert parsed.value.fields == [("by", "Field required")]


@pytest.mark.parametrize(
    "build",
    [
        lambda: Policy(payment_window="soon"),
        lambda: Policy.model_validate({"payment_windw": "15m"}),
        lambda: Policy.model_validate_json('{"price_deviation_limit": 0.1}'),
        lambda: Policy(partial_ban_durations=[]),
    ],
    ids=["init", "misspelt", "json float", "empty ladder"],
)
def test_a_policy_built_with_bad_input_is_an_escrow_error(build: Any) -> None:
    """An embedding backend passes `policy=Policy(...)`: its mistakes are the engine's
    validation_error naming the field, like a command's, not pydantic's own error."""
    with pytest.raises(ValidationError) as caught:
        build()
    assert isinstance(caught.value, EscrowError) and caught.value.code == "validation_error"
    fields = caught.value.fields  # type: ignore[attr-defined]
    assert len(fields) == 1 and fields[0][0] in str(caught.value)


def test_a_clash_that_kept_losing_has_its_own_code(
    engine: Escrow, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine.run("create_order", order_fields())
    before = event_count(engine)

    def clash(self: CommandRunner, unit: Any) -> None:
        raise IntegrityError("another writer took the version")

    monkeypatch.setattr(CommandRunner, "_save", clash)
    monkeypatch.setattr("escrow.commands.execution.MAX_ATTEMPTS", 3)
    with pytest.raises(ConcurrencyConflict) as caught:
        engine.run("mark_paid", {"order": "o1", "by": "bob"})
    assert caught.value.code == "concurrency_conflict" != "invalid_state"
    assert "concurrency_conflict" not in PRECEDENCE  # not a refusal by the rules
    assert event_count(engine) == before
    answer = refusal(caught.value)
    assert answer.status_code == 409
    assert json.loads(bytes(answer.body))["code"] == "concurrency_conflict"


def test_after_close_every_call_is_engine_closed(engine: Escrow) -> None:
    engine.run("create_order", order_fields())
    engine.close()
    engine.close()  # a second close is harmless
    calls = [
        lambda: engine.order("o1"),
        lambda: engine.orders(),
        lambda: engine.run("mark_paid", {"order": "o1", "by": "bob"}),
        lambda: engine.execute(MarkPaid(order="o1", by="bob")),
        lambda: engine.tick(),
        lambda: engine.allowed("bob", order="o1"),
        lambda: engine.ledgers(),
        lambda: engine.catch_up(),
    ]
    for call in calls:
        with pytest.raises(EngineClosed) as caught:
            call()
        assert caught.value.code == "engine_closed" and "closed" in str(caught.value)
    assert refusal(EngineClosed("x")).status_code == 503


@pytest.mark.parametrize(
    ("field", "call"),
    [
        ("state", lambda e: e.orders(state="bogus")),
        ("asset", lambda e: e.orders(asset="usdt")),
        ("asset", lambda e: e.ledger("usdt")),
        ("asset", lambda e: e.ledger_lines(asset="usdt")),
        ("trader", lambda e: e.orders(trader="no one")),
        ("trader", lambda e: e.trader(" ")),
        ("trader", lambda e: e.trader_stats("")),
        ("reason", lambda e: e.appeal_queue(reason="bogus")),
        ("waits_on", lambda e: e.appeal_queue(waits_on="godot")),
        ("older_than", lambda e: e.appeal_queue(older_than="2 hours")),
        ("agent", lambda e: e.appeal_queue(agent=7)),
        ("order", lambda e: e.order("o 1")),
        ("after", lambda e: e.orders(after=("2026-03-01", "o1"))),
        ("after", lambda e: e.orders(after=(datetime(2026, 3, 1, tzinfo=UTC), ""))),
        ("limit", lambda e: e.orders(limit=0)),
        ("sort", lambda e: e.traders(sort="height")),
        ("complaint", lambda e: e.allowed("bob")),
    ],
)
def test_bad_query_arguments_name_the_field(engine: Escrow, field: str, call: Any) -> None:
    with pytest.raises(ValidationError) as caught:
        call(engine)
    assert field in str(caught.value)


def test_good_query_arguments_still_answer(engine: Escrow) -> None:
    engine.run("create_order", order_fields())
    assert [o.order for o in engine.orders(state="awaiting_payment", asset="USDT")] == ["o1"]
    assert engine.appeal_queue(waits_on="refund_confirmation", reason="verbal_abuse") == []
    first = engine.orders()[0]
    assert engine.orders(after=(first.created_at, first.order)) == []
