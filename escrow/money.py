"""Money is Decimal end to end; products are exact or refused, never rounded."""

from __future__ import annotations

from decimal import Decimal, Inexact, localcontext


def exact_product(a: Decimal, b: Decimal) -> Decimal:
    """O1: `fiat_amount = amount × price` with no rounding at all."""
    with localcontext() as ctx:
        ctx.prec = 200
        ctx.traps[Inexact] = True
        return a * b
