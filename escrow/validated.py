"""Models built from callers' input: commands and the policy.

However one is built (`Model(...)`, `model_validate`, `model_validate_json`), bad input raises
the engine's own ValidationError naming each field, never pydantic's: a caller catches one
family of errors, `EscrowError`, whatever it passed.
"""

from __future__ import annotations

from typing import Any, Self

import pydantic
from pydantic import BaseModel
from pydantic_core import ErrorDetails

from escrow.errors import ValidationError


class InvalidFields(ValidationError):
    """Input that does not fit its model: `fields` names what is wrong, field by field;
    `details` is pydantic's record of each (its type and input) for a caller that words its
    own messages (the scenario loader)."""

    def __init__(
        self, name: str, fields: list[tuple[str, str]], details: list[ErrorDetails] | None = None
    ) -> None:
        self.fields = fields
        self.details = details or []
        super().__init__(f"{name}: " + "; ".join(f"{f}: {msg}" for f, msg in fields))


def field_errors(error: pydantic.ValidationError, whole: str) -> list[tuple[str, str]]:
    """(field, why) for each of pydantic's errors; `whole` names an error of no one field."""
    return [
        (".".join(str(p) for p in e["loc"]) or whole, e["msg"].removeprefix("Value error, "))
        for e in error.errors()
    ]


class Validated(BaseModel):
    @classmethod
    def invalid_input(cls, error: pydantic.ValidationError) -> InvalidFields:
        """The engine's error for `error`, naming what the subclass validates."""
        return InvalidFields(cls.__name__, field_errors(error, "fields"), error.errors())

    def __init__(self, **data: Any) -> None:
        try:
            super().__init__(**data)
        except pydantic.ValidationError as e:
            raise self.invalid_input(e) from None

    # Not a custom __init__ to pydantic: validation (model_validate) keeps its own fast path
    # and never calls this with a mapping's keys as keywords.
    __init__.__pydantic_base_init__ = True  # type: ignore[attr-defined]

    @classmethod
    def model_validate(cls, obj: Any, **kwargs: Any) -> Self:
        try:
            return super().model_validate(obj, **kwargs)
        except pydantic.ValidationError as e:
            raise cls.invalid_input(e) from None

    @classmethod
    def model_validate_json(cls, json_data: str | bytes | bytearray, **kwargs: Any) -> Self:
        try:
            return super().model_validate_json(json_data, **kwargs)
        except pydantic.ValidationError as e:
            raise cls.invalid_input(e) from None
