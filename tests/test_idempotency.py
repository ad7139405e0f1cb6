"""Idempotency (design: `command_id`): the same command sent again returns the first outcome.

A re-sent command with the same `command_id` is answered from its receipt (`replayed`), with
the events the first send recorded, and records nothing new, also when another engine on the
same store receives it (as another process would) and whatever happened since. The same
`command_id` for a different command is refused; a refused command leaves no receipt.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest

from escrow.clock import ManualClock
from escrow.commands.api import Escrow
from escrow.views import Outcome
from tests.helpers import event_count, order_fields, refused


def send(engine: Escrow, name: str, command_id: str, **fields: Any) -> Outcome:
    return engine.run(name, dict(fields, command_id=command_id))


def same_outcome(again: Outcome, first: Outcome) -> None:
    assert first.replayed is False
    assert again.replayed is True
    assert (again.command, again.command_id) == (first.command, first.command_id)
    assert again.recorded == first.recorded
    assert again.recorded  # the first send did record something


def test_resending_returns_the_first_outcome_and_records_nothing(engine: Escrow) -> None:
    first = [
        send(engine, "create_order", "o1", **order_fields("o1")),  # ids live apart from orders
        send(engine, "mark_paid", "k-paid", order="o1", by="bob", paid_amount="460"),
        send(engine, "release", "k-release", order="o1", by="alice"),
    ]
    stored = event_count(engine)
    again = [
        send(engine, "create_order", "o1", **order_fields("o1")),
        send(engine, "mark_paid", "k-paid", order="o1", by="bob", paid_amount="460"),
        send(engine, "release", "k-release", order="o1", by="alice"),
    ]
    for a, f in zip(again, first, strict=True):
        same_outcome(a, f)
    assert event_count(engine) == stored
    view = engine.order("o1")
    assert (view.state, view.version) == ("completed", 3)
    ledger = engine.ledger("USDT")
    assert (ledger.in_escrow, ledger.released) == (Decimal(0), Decimal(500))


def test_replay_wins_over_what_the_state_would_now_refuse(
    engine: Escrow, clock: ManualClock
) -> None:
    first = send(engine, "create_order", "k1", **order_fields("o1"))
    paid = send(engine, "mark_paid", "k2", order="o1", by="bob")
    send(engine, "release", "k3", order="o1", by="alice")
    clock.advance(timedelta(hours=1))  # past the payment deadline, and the order is completed
    stored = event_count(engine)
    same_outcome(send(engine, "mark_paid", "k2", order="o1", by="bob"), paid)
    same_outcome(send(engine, "create_order", "k1", **order_fields("o1")), first)
    assert event_count(engine) == stored
    # without its command_id the same command is a new one, decided on the state as it is
    refused(engine, "invalid_state", "mark_paid", order="o1", by="bob")
    refused(engine, "duplicate_id", "create_order", **order_fields("o1"))


def test_a_replayed_sanction_is_not_applied_twice(engine: Escrow) -> None:
    engine.run("create_order", order_fields("o1"))
    engine.run("mark_paid", {"order": "o1", "by": "bob"})
    engine.run("cancel_order", {"order": "o1", "by": "bob"})
    engine.run(
        "open_appeal",
        {"order": "o1", "by": "bob", "reason": "cancelled_after_payment", "appeal": "a1"},
    )
    engine.run("start_review", {"appeal": "a1", "by": "carol"})
    engine.run("request_refund", {"appeal": "a1", "by": "carol", "amount": "460"})
    first = send(engine, "refuse_refund", "k-refuse", appeal="a1", by="alice")
    assert ("trader", "Sanctioned") in {(r.stream, r.event) for r in first.recorded}
    stored = event_count(engine)
    same_outcome(send(engine, "refuse_refund", "k-refuse", appeal="a1", by="alice"), first)
    assert event_count(engine) == stored
    assert len(engine.trader("alice").sanctions) == 1
    ban = send(engine, "apply_sanction", "k-ban", trader="bob", by="carol", kind="partial_ban")
    same_outcome(
        send(engine, "apply_sanction", "k-ban", trader="bob", by="carol", kind="partial_ban"), ban
    )
    assert len(engine.trader("bob").sanctions) == 1  # not a second offence


def test_evidence_is_deduplicated_only_by_command_id(engine: Escrow) -> None:
    engine.run("create_order", order_fields("o1"))
    engine.run("mark_paid", {"order": "o1", "by": "bob"})
    engine.run(
        "open_appeal",
        {"order": "o1", "by": "bob", "reason": "seller_not_releasing", "appeal": "a1"},
    )
    evidence = {"appeal": "a1", "by": "bob", "description": "receipt", "refs": ["f1"]}
    for _ in range(2):
        send(engine, "add_evidence", "k-ev", **evidence)
    assert engine.appeal("a1").evidence_count == 1
    engine.run("add_evidence", evidence)
    engine.run("add_evidence", evidence)  # no command_id: two deliberate additions
    send(engine, "add_evidence", "k-ev-2", **evidence)
    assert engine.appeal("a1").evidence_count == 4


def test_same_command_id_for_another_command_is_refused(engine: Escrow) -> None:
    send(engine, "create_order", "k1", **order_fields("o1"))
    send(engine, "mark_paid", "k2", order="o1", by="bob", paid_amount="460")
    for name, fields in [
        ("mark_paid", {"order": "o1", "by": "bob", "paid_amount": "470"}),  # another amount
        ("mark_paid", {"order": "o1", "by": "bob"}),  # a field left out
        ("release", {"order": "o1", "by": "alice"}),  # another command
        ("create_order", order_fields("o2")),
    ]:
        refused(engine, "validation_error", name, command_id="k2", **fields)
    refused(engine, "validation_error", "create_order", command_id="k1", **order_fields("o9"))
    with pytest.raises(Exception, match="k2"):  # the refusal names the command_id
        engine.run("release", {"order": "o1", "by": "alice", "command_id": "k2"})
    assert engine.order("o1").state == "paid"
    assert engine.order("o1").paid_amount == Decimal(460)


def test_a_refused_command_leaves_no_receipt(engine: Escrow) -> None:
    engine.run("create_order", order_fields("o1"))
    refused(engine, "invalid_state", "release", order="o1", by="alice", command_id="k-rel")
    refused(engine, "invalid_state", "release", order="o1", by="alice", command_id="k-rel")
    refused(engine, "not_authorized", "release", order="o1", by="bob", command_id="k-rel-2")
    engine.run("mark_paid", {"order": "o1", "by": "bob"})
    outcome = send(engine, "release", "k-rel", order="o1", by="alice")
    assert outcome.replayed is False
    assert [(r.event, r.rule) for r in outcome.recorded] == [("Released", "O5")]
    assert engine.order("o1").state == "completed"
    # the id of a refused command was free, so another command may use it
    other = send(engine, "create_order", "k-rel-2", **order_fields("o2"))
    assert other.replayed is False
    same_outcome(send(engine, "release", "k-rel", order="o1", by="alice"), outcome)


def test_a_second_engine_on_the_same_store_replays_too(
    store_url: str, make_engine: Callable[..., Escrow]
) -> None:
    if store_url == "memory:":
        pytest.skip("a second in-memory engine is a different store")
    one = make_engine()
    first = [
        send(one, "create_order", "k1", **order_fields("o1")),
        send(one, "mark_paid", "k2", order="o1", by="bob"),
    ]
    two = make_engine()
    stored = event_count(two)
    assert stored == event_count(one)
    same_outcome(send(two, "create_order", "k1", **order_fields("o1")), first[0])
    same_outcome(send(two, "mark_paid", "k2", order="o1", by="bob"), first[1])
    refused(two, "validation_error", "mark_paid", order="o1", by="bob", command_id="k1")
    released = send(two, "release", "k3", order="o1", by="alice")
    same_outcome(send(one, "release", "k3", order="o1", by="alice"), released)
    assert event_count(one) == event_count(two) == stored + 2  # the release and its receipt
    assert one.order("o1").state == two.order("o1").state == "completed"
    assert one.ledger("USDT").released == two.ledger("USDT").released == Decimal(500)


def test_a_store_reopened_later_still_replays(
    store_url: str, make_engine: Callable[..., Escrow]
) -> None:
    if store_url == "memory:":
        pytest.skip("an in-memory store does not outlive its engine")
    one = make_engine()
    first = send(one, "create_order", "k1", **order_fields("o1"))
    one.close()
    two = make_engine()
    stored = event_count(two)
    same_outcome(send(two, "create_order", "k1", **order_fields("o1")), first)
    assert event_count(two) == stored
