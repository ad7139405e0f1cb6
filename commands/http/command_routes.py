"""`POST /v1/commands/{command}`: one route per command model, so the OpenAPI document shows
each command's own body. The route only builds the command (the engine's model, `by` from the
token, `command_id` from Idempotency-Key) and hands it to `Escrow.execute`.

Commands are the service's hot path, so they are plain Starlette routes that the service
answers before FastAPI's middleware and router (service.py; docs/http.md, "The command path").
What FastAPI would generate for them, `operations()` generates from the same models."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from escrow.commands.api import Escrow
from escrow.commands.http.answers import CommandAnswer
from escrow.commands.http.auth import engine_of, principal
from escrow.commands.http.bodies import MAX_KEY, REF, body_ref, command, read_json
from escrow.commands.http.keys import Principal
from escrow.commands.http.params import only
from escrow.commands.http.problems import responses
from escrow.commands.models import COMMANDS, Command
from escrow.errors import NotFound
from escrow.views import Outcome

PREFIX = "/v1/commands/"
CREATED = frozenset({"create_order", "open_appeal", "file_complaint"})
KEY = "Idempotency-Key"


def _answer(escrow: Escrow, outcome: Outcome, who: Principal) -> CommandAnswer:
    """The outcome and the views of what it changed, as it left them (so a replay answers
    what the first time did), and the traders it sanctioned (a trader's own record only)."""
    traders = dict.fromkeys(r.ref for r in outcome.recorded if r.stream == "trader")
    changed = escrow.changed(outcome)
    return CommandAnswer(
        **dict(outcome),
        order=changed.order,
        appeal=changed.appeal,
        complaint=changed.complaint,
        traders=[escrow.trader(name) for name in traders if who.sees_parties(name)],
    )


def _execute(request: Request, cmd: Command, who: Principal) -> CommandAnswer:
    escrow = engine_of(request).get()
    answer = _answer(escrow, escrow.execute(cmd), who)
    request.app.state.committed()
    return answer


def _status(name: str) -> int:
    return 201 if name in CREATED else 200


def _endpoint(name: str) -> Callable[[Request], Awaitable[Response]]:
    status = _status(name)

    async def post(request: Request) -> Response:
        who = principal(request)
        only(request, ())
        cmd = command(name, await read_json(request), who, request.headers.get(KEY))
        answer = await engine_of(request).call(_execute, request, cmd, who)
        headers = {"Idempotent-Replayed": "true"} if answer.replayed else None
        return Response(answer.model_dump_json(), status, headers, "application/json")

    return post


async def _unknown(request: Request) -> Response:
    principal(request)
    raise NotFound(f"no command {request.path_params['command']!r}")


ROUTES = [
    *(Route(f"{PREFIX}{name}", _endpoint(name), methods=["POST"]) for name in COMMANDS),
    Route(PREFIX + "{command}", _unknown, methods=["POST"]),
]


def operations() -> dict[str, Any]:
    """The commands' paths of the OpenAPI document, as FastAPI would write them."""
    key = {
        "name": KEY,
        "in": "header",
        "required": False,
        "description": "The command's `command_id`: the same key and body again answer the "
        "first answer (`Idempotent-Replayed: true`) and record nothing; another body is 422.",
        "schema": {"type": "string", "maxLength": MAX_KEY},
    }
    replayed = {
        "description": "`true` on the answer to a replayed Idempotency-Key",
        "required": False,
        "schema": {"type": "string", "enum": ["true"]},
    }
    answer = {"$ref": REF.format(model=CommandAnswer.__name__)}
    paths = {}
    for name, model in COMMANDS.items():
        operation = {
            "tags": ["commands"],
            "summary": name.replace("_", " "),
            "operationId": name,
            "security": [{"HTTPBearer": []}],
            "parameters": [key],
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": body_ref(name)}},
            },
            "responses": {
                str(_status(name)): {
                    "description": "the command's outcome and what it changed",
                    "headers": {"Idempotent-Replayed": replayed},
                    "content": {"application/json": {"schema": answer}},
                },
                **{str(s): r for s, r in responses(400, 403, 404, 409, 413, 422).items()},
            },
        }
        if model.__doc__:
            operation["description"] = model.__doc__
        paths[f"{PREFIX}{name}"] = {"post": operation}
    return paths
