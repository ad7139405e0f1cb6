"""Request bodies: each command's own pydantic model, read from the raw JSON, with `by` taken
from the token. Their OpenAPI schemas are the models' JSON schemas less `by` and
`command_id` (the token and the Idempotency-Key header carry those), so the document and the
validation can never disagree on a field or a limit."""

from __future__ import annotations

import json
from typing import Any

from pydantic.json_schema import models_json_schema
from starlette.requests import Request

from escrow.commands.http.keys import Principal
from escrow.commands.models import COMMANDS, Command, InvalidCommand, parse_command
from escrow.errors import NotAuthorized

MAX_BODY = 64 * 1024
MAX_KEY = 64
FROM_ELSEWHERE = {
    "by": "the actor is the token's principal, never a field of the body",
    "command_id": "send it as the Idempotency-Key header",
}
PLATFORM_ONLY = frozenset({"create_order"})  # commands with no `by`: the exchange issues them
REF = "#/components/schemas/{model}"


class BodyTooLarge(Exception):
    pass


class NotJSON(Exception):
    pass


async def read_json(request: Request) -> Any:
    """The body as JSON, refused past MAX_BODY whether or not Content-Length told the truth."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > MAX_BODY:
        raise BodyTooLarge
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY:
            raise BodyTooLarge
        chunks.append(chunk)
    try:
        return json.loads(b"".join(chunks))
    except ValueError:  # includes bytes that are not UTF-8
        raise NotJSON from None


def command(name: str, body: Any, caller: Principal, key: str | None) -> Command:
    """The command the caller sent, validated by the engine's own model."""
    if name in PLATFORM_ONLY and caller.role != "platform":
        raise NotAuthorized(f"only the platform issues {name}")
    if isinstance(body, dict):
        wrong = [(f, why) for f, why in FROM_ELSEWHERE.items() if f in body]
        if wrong:
            raise InvalidCommand(name, wrong)
        fields = dict(body)
        if "by" in COMMANDS[name].model_fields:
            fields["by"] = caller.name
        if key is not None:
            if len(key) > MAX_KEY:
                raise InvalidCommand(name, [("Idempotency-Key", f"at most {MAX_KEY} characters")])
            fields["command_id"] = key
        body = fields
    return parse_command(name, body)


def schemas() -> dict[str, Any]:
    """The request-body schema of every command, keyed by the command model's name."""
    _, top = models_json_schema(
        [(model, "validation") for model in COMMANDS.values()], ref_template=REF
    )
    defs: dict[str, Any] = top["$defs"]
    for model in COMMANDS.values():
        schema = defs[model.__name__]
        for name in FROM_ELSEWHERE:
            schema["properties"].pop(name, None)
        schema["required"] = [f for f in schema.get("required", []) if f not in FROM_ELSEWHERE]
        schema["additionalProperties"] = False
    return defs


def body_ref(name: str) -> dict[str, Any]:
    return {"$ref": REF.format(model=COMMANDS[name].__name__)}
