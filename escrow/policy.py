"""Policy is data: windows, limits and the sanction ladder, with the defaults of rules.md.

Callers override fields (a scenario's `policy:` block, the embedding API's `policy=`); the
values that change what an order may do are copied into the order when it is created, so a
policy changed later never rewrites the terms of an order already running.
"""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from typing import Annotated, Any

import pydantic
from pydantic import BeforeValidator, ConfigDict, Field, field_validator

from escrow.durations import MAX_DURATION, format_duration, parse_duration
from escrow.validated import InvalidFields, Validated, field_errors


def _duration(value: Any) -> Any:
    if isinstance(value, str):
        value = parse_duration(value)
    if isinstance(value, timedelta) and value > MAX_DURATION:
        raise ValueError("a policy duration is at most 3650d")
    if isinstance(value, timedelta):
        return value
    if isinstance(value, bool | int | float):
        raise ValueError("durations are written like 15m, 24h or 2d")
    return value


def _strict_decimal(value: Any) -> Any:
    if isinstance(value, float):
        raise ValueError("floats lose exactness; write the number as a string")
    return value


Duration = Annotated[timedelta, BeforeValidator(_duration)]
Fraction = Annotated[Decimal, BeforeValidator(_strict_decimal)]


class Policy(Validated):
    """Bad fields raise the engine's InvalidFields (a ValidationError naming each field)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    payment_window: Duration = Field(default=timedelta(minutes=15), gt=timedelta(0))
    payment_proof_deadline: Duration = Field(default=timedelta(days=2), gt=timedelta(0))
    freeze_proof_window: Duration = Field(default=timedelta(hours=24), gt=timedelta(0))
    temporary_suspension: Duration = Field(default=timedelta(hours=24), gt=timedelta(0))
    price_deviation_limit: Fraction = Field(default=Decimal("0.10"), ge=0, allow_inf_nan=False)
    partial_ban_durations: list[Duration] = Field(
        default_factory=lambda: [timedelta(hours=24), timedelta(days=7), timedelta(days=30)],
        min_length=1,
    )
    appeal_window_after_close: Duration = Field(default=timedelta(days=60), gt=timedelta(0))
    complaint_window: Duration = Field(default=timedelta(days=30), gt=timedelta(0))
    complaint_response_deadline: Duration = Field(default=timedelta(days=15), gt=timedelta(0))

    @classmethod
    def invalid_input(cls, error: pydantic.ValidationError) -> InvalidFields:
        return InvalidFields("policy", field_errors(error, "policy"), error.errors())

    @field_validator("partial_ban_durations")
    @classmethod
    def _positive(cls, value: list[timedelta]) -> list[timedelta]:
        if any(d <= timedelta(0) for d in value):
            raise ValueError("every partial ban lasts a positive time")
        return value

    def partial_ban_duration(self, earlier_bans: int, severe: bool) -> timedelta:
        """S3: the ladder by offence number (the last step repeats); severe doubles."""
        ladder = self.partial_ban_durations
        duration = ladder[min(earlier_bans, len(ladder) - 1)]
        return duration * 2 if severe else duration

    def describe(self) -> dict[str, str | list[str]]:
        """The policy in the syntax of scenario files, for docs and the CLI."""
        return {
            "payment_window": format_duration(self.payment_window),
            "payment_proof_deadline": format_duration(self.payment_proof_deadline),
            "freeze_proof_window": format_duration(self.freeze_proof_window),
            "temporary_suspension": format_duration(self.temporary_suspension),
            "price_deviation_limit": str(self.price_deviation_limit),
            "partial_ban_durations": [format_duration(d) for d in self.partial_ban_durations],
            "appeal_window_after_close": format_duration(self.appeal_window_after_close),
            "complaint_window": format_duration(self.complaint_window),
            "complaint_response_deadline": format_duration(self.complaint_response_deadline),
        }
