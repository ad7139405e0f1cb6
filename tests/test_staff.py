"""Agents and supervisors are facts of the store, managed by `appoint_agent` and
`dismiss_agent` (issue 19): the same in every process, recorded, audited, and never letting
anyone handle their own order."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from escrow.commands.api import Escrow
from escrow.commands.audit.history import History, trader_timeline
from escrow.commands.audit.verify import verify_store
from escrow.commands.staffing import appoint
from escrow.errors import EscrowError
from tests.helpers import event_count, order_fields, paid_order, refused
from tests.test_audit_verify import RawStore, check, rewrite


def second(make_engine: Callable[..., Escrow], store_url: str) -> Escrow:
    if store_url == "memory:":
        pytest.skip("a memory store lives in one engine")
    return make_engine()


def test_an_appointment_holds_in_every_process(
    make_engine: Callable[..., Escrow], store_url: str
) -> None:
    first = make_engine()
    first.run("appoint_agent", {"agent": "olga"})
    other = second(make_engine, store_url)  # opened with no list of agents at all
    refused(other, "not_authorized", "create_order", **order_fields(seller="olga"))
    paid_order(other)
    other.run(
        "open_appeal",
        {"order": "o1", "by": "bob", "reason": "seller_not_releasing", "appeal": "a1"},
    )
    other.run("start_review", {"appeal": "a1", "by": "olga"})
    assert other.appeal("a1").agent == "olga"
    assert other.trader("olga").staff == "agent" and other.staff()["olga"] == "agent"


def test_dismissal_and_promotion(engine: Escrow) -> None:
    engine.run("appoint_agent", {"agent": "olga"})
    refused(engine, "invalid_state", "appoint_agent", agent="olga")
    refused(engine, "not_found", "dismiss_agent", agent="nobody")
    refused(engine, "validation_error", "appoint_agent", agent="system")
    refused(
        engine, "validation_error", "apply_sanction", trader="olga", by="carol", kind="partial_ban"
    )
    paid_order(engine)
    engine.run(
        "open_appeal",
        {"order": "o1", "by": "bob", "reason": "seller_not_releasing", "appeal": "a1"},
    )
    engine.run("start_review", {"appeal": "a1", "by": "carol"})
    engine.run("resolve_appeal", {"appeal": "a1", "by": "carol", "outcome": "release"})
    engine.run(
        "file_complaint", {"complaint": "k1", "appeal": "a1", "by": "bob", "statement": "no"}
    )
    refused(engine, "not_authorized", "start_complaint_review", complaint="k1", by="olga")
    engine.run("appoint_agent", {"agent": "olga", "supervisor": True})
    assert engine.allowed("olga", complaint="k1") == [
        "start_complaint_review",
        "add_complaint_evidence",
    ]
    engine.run("dismiss_agent", {"agent": "olga"})
    assert engine.allowed("olga", complaint="k1") == []
    assert "olga" not in engine.staff()
    refused(engine, "invalid_state", "dismiss_agent", agent="olga")  # no longer staff
    engine.run("create_order", order_fields("o2", seller="olga"))  # a trader again


def test_nobody_handles_their_own_order(engine: Escrow) -> None:
    """Parties first: bob, appointed while his order is open, acts on it only as its buyer."""
    paid_order(engine)
    engine.run("appoint_agent", {"agent": "bob"})
    engine.run(
        "open_appeal",
        {"order": "o1", "by": "bob", "reason": "seller_not_releasing", "appeal": "a1"},
    )
    refused(engine, "not_authorized", "start_review", appeal="a1", by="bob")
    assert engine.allowed("bob", appeal="a1") == ["add_evidence", "cancel_appeal"]
    paid_order(engine, "o2", seller="erin", buyer="frank")
    engine.run(
        "open_appeal",
        {"order": "o2", "by": "frank", "reason": "seller_not_releasing", "appeal": "a2"},
    )
    engine.run("start_review", {"appeal": "a2", "by": "bob"})  # someone else's: as an agent


def test_appointments_are_recorded_audited_and_no_trader_figures(
    make_engine: Callable[..., Escrow], store_url: str
) -> None:
    engine = make_engine()
    before = event_count(engine)
    assert appoint(engine, ["olga"], ["pat"]) and appoint(engine, ["olga"], ["pat"]) == []
    assert event_count(engine) == before + 6  # two streams started, two appointments, receipts
    engine.run("dismiss_agent", {"agent": "pat"})
    with History(engine.app) as history:
        entries = trader_timeline(history, "olga")
        assert [e.event for e in entries] == ["Trader.Registered", "Trader.Appointed"]
    names = {t.trader for t in engine.traders(limit=1000)}
    assert not names & {"olga", "pat", "carol", "dave", "sam"}
    engine.run("create_order", order_fields())
    assert {t.trader for t in engine.traders()} == {"alice", "bob"}
    if store_url != "memory:":
        engine.close()
        assert verify_store(store_url).clean


def test_two_processes_appointing_at_once_record_it_once(
    make_engine: Callable[..., Escrow], store_url: str
) -> None:
    one = make_engine()
    other = second(make_engine, store_url)
    before = event_count(one)
    appoint(one, ["olga"])
    outcomes = appoint(other, ["olga"])  # as a server started alongside would
    assert outcomes == [] and event_count(one) == before + 3
    with pytest.raises(EscrowError):
        other.run("appoint_agent", {"agent": "olga"})


def test_verify_names_an_appointment_not_by_the_platform(
    make_engine: Callable[..., Escrow], store_url: str
) -> None:
    if store_url == "memory:":
        pytest.skip("the audit reads a store another process can open")
    engine = make_engine()
    engine.run("appoint_agent", {"agent": "olga"})
    engine.close()
    raw = RawStore(store_url)
    try:
        rewrite(raw, "trader", "olga", 2, lambda f: f.update(actor="mallory"))
    finally:
        raw.close()
    assert [f.rule for f in check(store_url).findings] == ["staff"]
