"""Every amount a user sees is plain decimal text: never `1E-7`, `1E+3` or `0E-8` (issue 19).

A Decimal keeps the exponent its arithmetic gave it, and `str` writes small and large
exponents in scientific notation; what leaves the engine as text goes through one serializer
(escrow.money.PlainDecimal). Checked with a tiny and a huge amount through the views, the read
models, the CLI (tables and `--json`), the audit export and the event JSON.
"""

from __future__ import annotations

import json
import re
from decimal import Decimal
from pathlib import Path
from typing import Any

from click.testing import CliRunner
from pydantic import BaseModel

from escrow.clock import ManualClock
from escrow.commands.api import Escrow
from escrow.commands.audit.export import export_records, write_export
from escrow.commands.audit.history import History
from escrow.commands.cli.main import main
from escrow.commands.events import EventFeed
from escrow.money import plain_amount
from tests.helpers import order_fields

TINY = "0.0000001"  # str(Decimal) says 1E-7
HUGE = "999999999999999.999999"  # under the 10^15 limit, 21 digits
PLAIN = re.compile(r"^-?\d+(\.\d+)?$")
AMOUNT_KEYS = {
    "amount",
    "price",
    "reference_price",
    "fiat_amount",
    "paid_amount",
    "locked",
    "released",
    "returned",
    "in_escrow",
    "clawback_owed",
    "clawback_recovered",
}


def amounts(value: Any) -> list[str]:
    """Every value under an amount key, anywhere in a JSON document."""
    found: list[str] = []
    if isinstance(value, dict):
        for k, v in value.items():
            if k in AMOUNT_KEYS and v is not None:
                found.append(v)
            else:
                found.extend(amounts(v))
    elif isinstance(value, list):
        for v in value:
            found.extend(amounts(v))
    return found


def assert_plain(document: Any) -> list[str]:
    seen = amounts(document)
    assert seen, "no amount in the document"
    for text in seen:
        assert isinstance(text, str) and PLAIN.match(text), f"not plain decimal text: {text!r}"
    return seen


def dumped(items: BaseModel | list[Any]) -> Any:
    if isinstance(items, BaseModel):
        return items.model_dump(mode="json")
    return [i.model_dump(mode="json") for i in items]


def trade(engine: Escrow) -> None:
    """A tiny order released, a huge one left in escrow, an asset nobody traded yet."""
    engine.run("create_order", order_fields("tiny", asset="BTC", amount=TINY, price="1"))
    engine.run("mark_paid", {"order": "tiny", "by": "bob"})
    engine.run("release", {"order": "tiny", "by": "alice"})
    engine.run("create_order", order_fields("huge", asset="ETH", amount=HUGE, price="1"))


def test_the_serializer() -> None:
    assert plain_amount(Decimal("1E-7")) == "0.0000001"
    assert plain_amount(Decimal("1E+3")) == "1000"
    assert plain_amount(Decimal("0E-8")) == "0"
    assert plain_amount(Decimal("-0")) == "0"
    assert plain_amount(Decimal("1.50")) == "1.50"


def test_views_and_read_models_in_json(engine: Escrow) -> None:
    trade(engine)
    assert str(engine.ledger("BTC").released) == "1E-7"  # what Python keeps: a Decimal
    assert dumped(engine.ledger("BTC"))["in_escrow"] == "0"  # 1E-7 - 1E-7 is 0E-7
    assert dumped(engine.ledger("BTC"))["released"] == TINY
    assert dumped(engine.ledger("XRP"))["released"] == "0"
    assert TINY in assert_plain(dumped(engine.ledgers()))
    assert HUGE in assert_plain(dumped(engine.orders()))
    assert_plain(dumped(engine.ledger_lines(asset="BTC")))
    tiny = dumped(engine.order("tiny"))
    assert tiny["amount"] == TINY and tiny["escrow"]["released"] == TINY
    assert tiny["escrow"]["returned"] == "0"
    assert assert_plain(dumped(engine.order("huge"))).count(HUGE) >= 2
    assert json.loads(engine.order("tiny").model_dump_json())["fiat_amount"] == TINY


def test_the_cli_views_audit_export_and_event_json(tmp_path: Path, clock: ManualClock) -> None:
    url = f"sqlite:///{tmp_path / 'plain.db'}"
    with Escrow(url, clock=clock) as engine:
        trade(engine)
        history = History(engine.app)
        events = EventFeed(history).page(0, 100)
        assert TINY in assert_plain(events)
        exported = tmp_path / "export.jsonl"
        with exported.open("w") as out:
            write_export(export_records(history), "jsonl", out)
        lines = [json.loads(line) for line in exported.read_text().splitlines()]
        assert HUGE in assert_plain(lines)
    run = CliRunner()
    for args in (["views", "orders", "--json"], ["views", "ledger", "--json"]):
        result = run.invoke(main, [*args, "--store", url], catch_exceptions=False)
        assert result.exit_code == 0, result.output
        assert_plain(json.loads(result.output))
    table = run.invoke(main, ["views", "ledger", "--store", url], catch_exceptions=False)
    assert "E-" not in table.output and "E+" not in table.output
    assert "0.0000001" in table.output
