"""Bad input is refused with a typed code, never a traceback, and stores nothing.

Every case goes through `engine.run(name, fields)` (the pydantic boundary) on memory, SQLite
and PostgreSQL, next to a valid state, so a refusal can only come from the bad field; the same
cases through `parse_command` must name that field. Limits are those of the docstring of
`commands/models.py` (the README's "Input limits").
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from escrow.commands.api import Escrow
from escrow.commands.models import InvalidCommand, parse_command
from escrow.errors import EscrowError
from tests.helpers import event_count, order_fields, refused

DROP = object()  # a field left out


def valid_fields() -> dict[str, dict[str, Any]]:
    """A valid command of each kind against the state `prepare` builds."""
    return {
        "create_order": order_fields("o2", reference_price="0.92", instant=False),
        "mark_paid": {"order": "o1", "by": "bob", "paid_amount": "500"},
        "cancel_order": {"order": "o1", "by": "bob"},
        "release": {"order": "o1", "by": "alice"},
        "open_appeal": {
            "order": "o1",
            "by": "bob",
            "reason": "verbal_abuse",
            "appeal": "a1",
            "description": "rude",
        },
        "add_evidence": {"appeal": "a0", "by": "bob", "description": "receipt", "refs": ["f1"]},
        "cancel_appeal": {"appeal": "a0", "by": "bob"},
        "start_review": {"appeal": "a0", "by": "carol"},
        "request_refund": {"appeal": "a0", "by": "carol", "amount": "40", "note": "overpaid"},
        "report_refund": {"appeal": "a0", "by": "alice", "amount": "40", "reference": "tx-1"},
        "confirm_top_up": {"appeal": "a0", "by": "carol", "amount": "60"},
        "submit_payment_proof": {"appeal": "a0", "by": "bob", "refs": ["f2"]},
        "apply_sanction": {
            "trader": "bob",
            "by": "carol",
            "kind": "partial_ban",
            "severity": "normal",
            "appeal": "a0",
        },
        "lift_sanction": {"trader": "bob", "by": "carol", "kind": "partial_ban"},
        "resolve_appeal": {"appeal": "a0", "by": "carol", "outcome": "release"},
    }


def prepare(engine: Escrow) -> None:
    """o0 paid with an appeal a0 under review, o1 awaiting payment."""
    engine.run("create_order", order_fields("o0"))
    engine.run("mark_paid", {"order": "o0", "by": "bob", "paid_amount": "500"})
    engine.run(
        "open_appeal", {"order": "o0", "by": "bob", "reason": "amount_mismatch", "appeal": "a0"}
    )
    engine.run("start_review", {"appeal": "a0", "by": "carol"})
    engine.run("create_order", order_fields("o1"))


def bad(name: str, field: str, value: Any) -> tuple[str, dict[str, Any], str]:
    fields = dict(valid_fields()[name])
    if value is DROP:
        fields.pop(field)
    else:
        fields[field] = value
    return name, fields, field


AMOUNT_FIELDS = [
    ("create_order", "amount"),
    ("create_order", "price"),
    ("create_order", "reference_price"),
    ("mark_paid", "paid_amount"),
    ("request_refund", "amount"),
    ("report_refund", "amount"),
    ("confirm_top_up", "amount"),
]
BAD_AMOUNTS: list[Any] = [
    "-1",
    "-0.01",
    "0",
    "0.000",
    "-0",
    "NaN",
    "nan",
    "sNaN",
    "Infinity",
    "-Infinity",
    "inf",
    0.5,  # a float: inexact
    1.0,
    True,
    "1000000000000000",  # 10^15
    "1e15",
    10**15,
    10**30,
    "999999999999999.9999999999999999999",  # 19 decimal places
    "0.0000000000000000001",
    "1E-19",
    "abc",
    "",
    " ",
    "1,5",
    "1.2.3",
    "0x10",
    "5 EUR",
    [],
    {"value": "5"},
]

CASES: dict[str, list[tuple[str, dict[str, Any], str]]] = {
    "amounts": [bad(n, f, v) for n, f in AMOUNT_FIELDS for v in BAD_AMOUNTS],
    "unknown_fields": [
        bad("create_order", "colour", "red"),
        bad("create_order", "by", "alice"),  # the platform creates orders, nobody signs them
        bad("mark_paid", "amount", "460"),
        bad("open_appeal", "outcome", "release"),
        bad("add_evidence", "files", ["f1"]),
        bad("apply_sanction", "duration", "7d"),
        bad("lift_sanction", "appeal", "a0"),
        bad("resolve_appeal", "note", "done"),
        bad("release", "command", "release"),
    ],
    "missing_fields": [
        bad("create_order", "seller", DROP),
        bad("create_order", "amount", DROP),
        bad("create_order", "payment_method", DROP),
        bad("mark_paid", "by", DROP),
        bad("open_appeal", "reason", DROP),
        bad("open_appeal", "appeal", DROP),
        bad("add_evidence", "description", DROP),
        bad("request_refund", "amount", DROP),
        bad("apply_sanction", "kind", DROP),
        bad("resolve_appeal", "by", DROP),
    ],
    "wrong_types": [
        bad("create_order", "order", 2),
        bad("create_order", "seller", 7),
        bad("create_order", "buyer", None),
        bad("create_order", "asset", 1),
        bad("create_order", "payment_method", ["bank"]),
        bad("create_order", "instant", "true"),
        bad("create_order", "instant", "yes"),
        bad("create_order", "instant", 1),
        bad("create_order", "instant", None),
        bad("create_order", "payment_window", 15),
        bad("create_order", "payment_window", "15"),
        bad("create_order", "payment_window", "0m"),
        bad("create_order", "payment_window", "-5m"),
        bad("create_order", "payment_window", "soon"),
        bad("create_order", "payment_window", "31d"),
        bad("create_order", "payment_window", "99999999999999999d"),
        bad("create_order", "amount", None),
        bad("request_refund", "amount", None),
        bad("mark_paid", "by", 5),
        bad("mark_paid", "order", True),
        bad("open_appeal", "description", 5),
        bad("add_evidence", "refs", "f1"),
        bad("add_evidence", "refs", [1]),
        bad("add_evidence", "refs", [["f1"]]),
        bad("add_evidence", "refs", {"f1": "x"}),
        bad("apply_sanction", "severity", True),
        bad("resolve_appeal", "outcome", 1),
        bad("resolve_appeal", "command_id", 5),
    ],
    "beyond_limits": [
        bad("create_order", "order", "o" * 65),
        bad("create_order", "order", ""),
        bad("create_order", "order", "my order"),
        bad("create_order", "order", "o/1"),
        bad("create_order", "order", "ordér"),
        bad("create_order", "order", "-o1"),
        bad("create_order", "order", ".o1"),
        bad("create_order", "seller", "a" * 65),
        bad("create_order", "buyer", "bob\n"),
        bad("create_order", "asset", "usdt"),
        bad("create_order", "asset", "U"),
        bad("create_order", "asset", "ABCDEFGHIJK"),
        bad("create_order", "asset", "US DT"),
        bad("create_order", "fiat", "eur"),
        bad("create_order", "fiat", "€"),
        bad("create_order", "payment_method", "m" * 65),
        bad("create_order", "payment_method", ""),
        bad("create_order", "payment_method", "bank\x00transfer"),
        bad("mark_paid", "by", "b" * 65),
        bad("open_appeal", "appeal", "a" * 65),
        bad("open_appeal", "description", "d" * 2001),
        bad("open_appeal", "description", ""),
        bad("add_evidence", "description", "d" * 2001),
        bad("add_evidence", "description", "nul\x00byte"),
        bad("add_evidence", "refs", ["r"] * 21),
        bad("add_evidence", "refs", ["r" * 201]),
        bad("add_evidence", "refs", [""]),
        bad("request_refund", "note", "n" * 201),
        bad("report_refund", "reference", "r" * 201),
        bad("submit_payment_proof", "refs", ["r"] * 21),
        bad("apply_sanction", "trader", "t" * 65),
        bad("lift_sanction", "trader", "bob smith"),
        bad("resolve_appeal", "command_id", "c" * 65),
        bad("resolve_appeal", "command_id", "id with spaces"),
    ],
    "unknown_vocabulary": [
        bad("open_appeal", "reason", "scam"),
        bad("open_appeal", "reason", "VERBAL_ABUSE"),
        bad("open_appeal", "reason", "B5"),
        bad("open_appeal", "reason", ""),
        bad("apply_sanction", "kind", "ban"),
        bad("apply_sanction", "kind", "trading_suspension_24h"),  # S2 comes from C4 only
        bad("apply_sanction", "severity", "extreme"),
        bad("lift_sanction", "kind", "temporary"),
        bad("resolve_appeal", "outcome", "refund"),
        bad("resolve_appeal", "outcome", "none"),
        bad("resolve_appeal", "outcome", "RELEASE"),
    ],
}


def test_every_valid_base_command_parses() -> None:
    """The cases below differ from these only in the field they name."""
    for name, fields in valid_fields().items():
        parse_command(name, fields)


@pytest.mark.parametrize(
    ("name", "fields", "field"),
    [case for cases in CASES.values() for case in cases],
    ids=[f"{c}-{n}.{f}-{i}" for c, cases in CASES.items() for i, (n, _, f) in enumerate(cases)],
)
def test_parse_command_names_the_bad_field(name: str, fields: dict[str, Any], field: str) -> None:
    with pytest.raises(InvalidCommand) as caught:
        parse_command(name, fields)
    error = caught.value
    assert error.code == "validation_error"
    assert error.command == name
    named = [where for where, _ in error.fields]
    assert any(where == field or where.startswith(f"{field}.") for where in named), named
    assert field in str(error)


@pytest.mark.parametrize("category", sorted(CASES))
def test_engine_refuses_bad_input_and_stores_nothing(engine: Escrow, category: str) -> None:
    prepare(engine)
    before = event_count(engine)
    for name, fields, field in CASES[category]:
        try:
            refused(engine, "validation_error", name, **fields)
        except AssertionError as e:
            raise AssertionError(f"{name}.{field}={fields.get(field)!r}: {e}") from None
    assert event_count(engine) == before
    assert engine.order("o1").state == "awaiting_payment"
    assert engine.appeal("a0").state == "under_review"
    assert engine.ledger("USDT").in_escrow == Decimal(1000)


def test_buyer_equal_to_seller_is_validation_error(engine: Escrow) -> None:
    refused(engine, "validation_error", "create_order", **order_fields(seller="bob", buyer="bob"))
    refused(
        engine, "validation_error", "create_order", **order_fields(seller="carol", buyer="carol")
    )
    assert engine.ledger("USDT").in_escrow == 0


def test_fields_that_are_not_a_mapping_or_an_unknown_command(engine: Escrow) -> None:
    for name, fields in [
        ("mark_paid", ["o1", "bob"]),
        ("mark_paid", "o1"),
        ("mark_paid", None),
        ("delete_order", {"order": "o1"}),
        ("expire_payment_window", {"order": "o1"}),  # system commands are not for callers
        ("expire_sanctions", {"trader": "bob"}),
        ("", {}),
    ]:
        before = event_count(engine)
        with pytest.raises(EscrowError) as caught:
            engine.run(name, fields)  # type: ignore[arg-type]
        assert caught.value.code == "validation_error", (name, fields)
        assert event_count(engine) == before


def test_the_limits_themselves_are_accepted(engine: Escrow) -> None:
    """Right at each documented limit the command goes through, on every store."""
    top = "999999999999999.999999999999999999"  # below 10^15, 18 decimal places
    engine.run(
        "create_order",
        order_fields(
            "o" * 64,
            seller="s" * 64,
            buyer="b.u_y:e@r-1",
            asset="ABCDEFGHIJ",
            fiat="EU",
            amount=top,
            price="0.000000000000000001",
            payment_method="m" * 64,
            payment_window="30d",
        ),
    )
    view = engine.order("o" * 64)
    assert view.amount == Decimal(top)
    assert view.fiat_amount == Decimal(top.replace(".", "") + "E-36")  # exact, not rounded
    assert engine.ledger("ABCDEFGHIJ").in_escrow == Decimal(top)
    engine.run("mark_paid", {"order": "o" * 64, "by": "b.u_y:e@r-1", "paid_amount": 10**15 - 1})
    engine.run(
        "open_appeal",
        {
            "order": "o" * 64,
            "by": "b.u_y:e@r-1",
            "reason": "amount_mismatch",
            "appeal": "A" * 64,
            "description": "d" * 2000,
        },
    )
    engine.run(
        "add_evidence",
        {
            "appeal": "A" * 64,
            "by": "s" * 64,
            "description": "é😀\n" * 600,
            "refs": ["r" * 200] * 20,
        },
    )
    engine.run("start_review", {"appeal": "A" * 64, "by": "carol"})
    engine.run(
        "request_refund", {"appeal": "A" * 64, "by": "carol", "amount": "0.5", "note": "n" * 200}
    )
    engine.run(
        "report_refund",
        {"appeal": "A" * 64, "by": "s" * 64, "amount": "0.5", "reference": "r" * 200},
    )
    appeal = engine.appeal("A" * 64)
    assert (appeal.evidence_count, appeal.refund_state) == (1, "reported")
    assert appeal.refunds[0].reference == "r" * 200


UNKNOWN_IDS: list[tuple[str, dict[str, Any]]] = [
    ("mark_paid", {"order": "nope", "by": "bob"}),
    ("cancel_order", {"order": "nope", "by": "bob"}),
    ("release", {"order": "nope", "by": "alice"}),
    ("open_appeal", {"order": "nope", "by": "bob", "reason": "verbal_abuse", "appeal": "a9"}),
    ("add_evidence", {"appeal": "nope", "by": "bob", "description": "x"}),
    ("cancel_appeal", {"appeal": "nope", "by": "bob"}),
    ("start_review", {"appeal": "nope", "by": "carol"}),
    ("request_refund", {"appeal": "nope", "by": "carol", "amount": "1"}),
    ("report_refund", {"appeal": "nope", "by": "alice", "amount": "1"}),
    ("confirm_refund", {"appeal": "nope", "by": "carol"}),
    ("refuse_refund", {"appeal": "nope", "by": "alice"}),
    ("request_payment_proof", {"appeal": "nope", "by": "carol"}),
    ("submit_payment_proof", {"appeal": "nope", "by": "bob"}),
    ("agree_top_up", {"appeal": "nope", "by": "bob"}),
    ("refuse_top_up", {"appeal": "nope", "by": "bob"}),
    ("confirm_top_up", {"appeal": "nope", "by": "carol"}),
    ("submit_freeze_proof", {"appeal": "nope", "by": "alice"}),
    ("resolve_appeal", {"appeal": "nope", "by": "carol", "outcome": "cancel"}),
    ("apply_sanction", {"trader": "bob", "by": "carol", "kind": "partial_ban", "appeal": "x"}),
]


def test_unknown_ids_are_not_found(engine: Escrow) -> None:
    prepare(engine)
    for name, fields in UNKNOWN_IDS:
        refused(engine, "not_found", name, **fields)
        # not_found is checked before not_authorized: a stranger learns nothing more
        refused(engine, "not_found", name, **dict(fields, by="mallory"))


def test_validation_error_comes_before_not_found(engine: Escrow) -> None:
    refused(engine, "validation_error", "mark_paid", order="nope", by="bob", paid_amount="-1")
    refused(engine, "validation_error", "request_refund", appeal="nope", by="carol", amount="NaN")
    refused(engine, "validation_error", "resolve_appeal", appeal="nope", by="carol", outcome="x")
    refused(engine, "validation_error", "add_evidence", appeal="nope", by="bob", description="")


def test_engine_still_works_after_bad_input(engine: Escrow) -> None:
    """A refusal at the boundary leaves the engine and every store usable."""
    prepare(engine)
    for name, fields, _ in CASES["beyond_limits"]:
        with pytest.raises(EscrowError):
            engine.run(name, fields)
    engine.run("mark_paid", {"order": "o1", "by": "bob"})
    engine.run("release", {"order": "o1", "by": "alice"})
    assert engine.order("o1").state == "completed"
    assert engine.ledger("USDT").released == Decimal(500)


# --- after the trade: reversals and complaints (C6, K1–K3, E1–E6) ----------------------------

AFTER_TRADE: dict[str, dict[str, Any]] = {
    "confirm_reversal": {"appeal": "a0", "by": "carol", "amount": "5"},
    "record_recovery": {"appeal": "a0", "by": "carol", "amount": "5"},
    "waive_clawback": {"appeal": "a0", "by": "carol"},
    "file_complaint": {"complaint": "k1", "appeal": "a0", "by": "bob", "statement": "unfair"},
    "start_complaint_review": {"complaint": "k1", "by": "sam"},
    "decide_complaint": {"complaint": "k1", "by": "sam", "decision": "overturned"},
    "withdraw_complaint": {"complaint": "k1", "by": "bob"},
    "add_complaint_evidence": {"complaint": "k1", "by": "bob", "description": "receipt"},
}


def after_trade(name: str, field: str, value: Any) -> tuple[str, dict[str, Any], str]:
    fields = dict(AFTER_TRADE[name])
    if value is DROP:
        fields.pop(field)
    else:
        fields[field] = value
    return name, fields, field


AFTER_TRADE_CASES = [
    *(
        after_trade(n, "amount", v)
        for n in ("confirm_reversal", "record_recovery")
        for v in ("0", "-1", "NaN", 0.5, "1e15", "abc", None, DROP)
    ),
    *(after_trade("decide_complaint", "compensation", v) for v in ("0", "-5", 1.5, "x", True)),
    # E4: a decision that lets the resolution stand owes nothing
    (
        "decide_complaint",
        {"complaint": "k1", "by": "sam", "decision": "upheld", "compensation": "10"},
        "compensation",
    ),
    *(after_trade("decide_complaint", "decision", v) for v in ("rejected", "", None, 1, DROP)),
    *(
        after_trade(n, "complaint", v)
        for n in ("file_complaint", "start_complaint_review", "withdraw_complaint")
        for v in ("", "k 1", "k" * 65, 7, DROP)
    ),
    *(after_trade("file_complaint", "appeal", v) for v in ("a/0", None, DROP)),
    *(after_trade("file_complaint", "statement", v) for v in ("", "s" * 2001, "nul\x00", DROP)),
    after_trade("file_complaint", "refs", ["r"] * 21),
    after_trade("add_complaint_evidence", "description", DROP),
    after_trade("waive_clawback", "amount", "5"),
    after_trade("confirm_reversal", "outcome", "release"),
]


@pytest.mark.parametrize(("name", "fields", "field"), AFTER_TRADE_CASES)
def test_after_trade_bad_input_names_the_field(
    name: str, fields: dict[str, Any], field: str
) -> None:
    parse_command(name, AFTER_TRADE[name])  # the valid command parses
    with pytest.raises(InvalidCommand) as caught:
        parse_command(name, fields)
    assert field in {f.split(".")[0] for f, _ in caught.value.fields}, caught.value


def test_after_trade_bad_input_is_refused_and_stores_nothing(engine: Escrow) -> None:
    prepare(engine)
    for name, fields, _ in AFTER_TRADE_CASES:
        refused(engine, "validation_error", name, **fields)
    refused(engine, "not_found", "start_complaint_review", complaint="k9", by="sam")
    refused(engine, "not_found", "confirm_reversal", appeal="a9", by="carol", amount="1")
