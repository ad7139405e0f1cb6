"""`POST /v1/commands/{command}`: one route per command model, so the OpenAPI document shows
each command's own body. The route only builds the command (the engine's model, `by` from the
token, `command_id` from Idempotency-Key) and hands it to `Escrow.execute`."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import APIRouter, Depends, Header, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from escrow.commands.api import Escrow
from escrow.commands.http.answers import CommandAnswer
from escrow.commands.http.auth import caller, engine_of
from escrow.commands.http.bodies import MAX_KEY, body_ref, command, read_json
from escrow.commands.http.keys import Principal
from escrow.commands.http.params import known_only
from escrow.commands.http.problems import responses
from escrow.commands.models import COMMANDS, Command
from escrow.errors import NotFound
from escrow.views import Outcome

CREATED = frozenset({"create_order", "open_appeal", "file_complaint"})

Caller = Annotated[Principal, Depends(caller)]
Key = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        max_length=MAX_KEY,
        description="The command's `command_id`: the same key and body again answer the first "
        "answer (`Idempotent-Replayed: true`) and record nothing; another body is 422.",
    ),
]

router = APIRouter(tags=["commands"], dependencies=[Depends(known_only)])


def _answer(escrow: Escrow, outcome: Outcome, who: Principal) -> CommandAnswer:
    """The outcome and the views of what it changed (a trader's own record only)."""
    refs = {
        kind: dict.fromkeys(r.ref for r in outcome.recorded if r.stream == kind)
        for kind in ("order", "appeal", "complaint", "trader")
    }
    return CommandAnswer(
        **dict(outcome),
        order=next((escrow.order(ref) for ref in refs["order"]), None),
        appeal=next((escrow.appeal(ref) for ref in refs["appeal"]), None),
        complaint=next((escrow.complaint(ref) for ref in refs["complaint"]), None),
        traders=[escrow.trader(name) for name in refs["trader"] if who.sees_parties(name)],
    )


def _execute(request: Request, cmd: Command, who: Principal) -> CommandAnswer:
    escrow = engine_of(request).get()
    answer = _answer(escrow, escrow.execute(cmd), who)
    request.app.state.committed()
    return answer


def _route(name: str) -> Callable[..., Awaitable[Response]]:
    status = 201 if name in CREATED else 200

    async def post(request: Request, who: Caller, key: Key = None) -> Response:
        cmd = command(name, await read_json(request), who, key)
        answer = await run_in_threadpool(_execute, request, cmd, who)
        headers = {"Idempotent-Replayed": "true"} if answer.replayed else None
        return Response(answer.model_dump_json(), status, headers, "application/json")

    post.__doc__ = COMMANDS[name].__doc__
    return post


for _name, _model in COMMANDS.items():
    router.add_api_route(
        f"/v1/commands/{_name}",
        _route(_name),
        methods=["POST"],
        name=_name,
        summary=_name.replace("_", " "),
        status_code=201 if _name in CREATED else 200,
        response_model=CommandAnswer,
        responses=responses(400, 403, 404, 409, 413, 422),
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": body_ref(_name)}},
            }
        },
    )


@router.post("/v1/commands/{command}", include_in_schema=False)
def unknown(command: str, who: Caller) -> Response:
    raise NotFound(f"no command {command!r}")
