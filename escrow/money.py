"""PlainDecimal is Decimal end to end; products are exact or refused, never rounded; what a user
sees of it is plain decimal text."""

from __future__ import annotations

from decimal import Decimal, Inexact, localcontext
from typing import Annotated

from pydantic import PlainSerializer


def exact_product(a: Decimal, b: Decimal) -> Decimal:
    """O1: `fiat_amount = amount × price` with no rounding at all."""
    with localcontext() as ctx:
        ctx.prec = 200
        ctx.traps[Inexact] = True
        return a * b


def plain_amount(value: Decimal) -> str:
    """An amount as a user reads it: plain decimal text, never scientific notation.

    `str(Decimal)` writes small and large exponents as `1E-7` or `1E+3`; `format(d, "f")`
    spells every digit (`0.0000001`). A zero is written `0` whatever exponent arithmetic left
    on it (an empty ledger sums to `0E-8`, which `f` would print as `0.00000000`)."""
    return "0" if value == 0 else format(value, "f")


PlainDecimal = Annotated[Decimal, PlainSerializer(plain_amount, return_type=str, when_used="json")]
"""The one type of every model field that holds an amount (or any other Decimal a user
reads, such as a rate): a Decimal in Python, plain decimal text in JSON (`model_dump(mode="json")`, `model_dump_json`, the HTTP answers)."""
