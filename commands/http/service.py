"""The ASGI application `escrow serve` runs: FastAPI, save for the commands.

`POST /v1/commands/...` is the service's hot path. FastAPI's middleware stack and router cost
about 0.1 ms a request before a route is reached (docs/http.md, "The command path"), so a
command goes straight to the command routes, behind the same edge (access log, last-resort
fault) and the same refusal handlers as every other route. Everything else, the lifespan
included, is FastAPI's.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException
from starlette.middleware.exceptions import ExceptionMiddleware
from starlette.responses import Response
from starlette.routing import Router
from starlette.types import Receive, Scope, Send

from escrow.commands.http import command_routes
from escrow.commands.http.auth import Unauthenticated
from escrow.commands.http.bodies import BodyTooLarge, NotJSON
from escrow.commands.http.edge import Edge
from escrow.commands.http.engine import StoreUnavailable
from escrow.commands.http.problems import problem, refusal, unreachable
from escrow.errors import EscrowError


async def _escrow_error(_: Request, error: Exception) -> Response:
    assert isinstance(error, EscrowError)
    return refusal(error)


async def _unauthenticated(_: Request, __: Exception) -> Response:
    return problem(
        401,
        "unauthenticated",
        "send Authorization: Bearer TOKEN with a token of the keys file",
        headers={"WWW-Authenticate": "Bearer"},
    )


async def _invalid(_: Request, error: Exception) -> Response:
    assert isinstance(error, RequestValidationError)
    fields = [(".".join(str(p) for p in e["loc"]), str(e["msg"])) for e in error.errors()]
    return problem(422, "validation_error", "invalid request parameters", errors=fields)


async def _http_error(_: Request, error: Exception) -> Response:
    assert isinstance(error, HTTPException)
    code = "not_found" if error.status_code == 404 else "http_error"
    return problem(error.status_code, code, str(error.detail), headers=dict(error.headers or {}))


async def _unreachable(_: Request, __: Exception) -> Response:
    return unreachable()


async def _too_large(_: Request, __: Exception) -> Response:
    return problem(413, "payload_too_large", "the body is over 64 KiB")


async def _not_json(_: Request, __: Exception) -> Response:
    return problem(400, "invalid_json", "the body is not JSON")


# Every refusal the routes raise, as problem+json: the one table, for both paths.
REFUSALS: dict[Any, Any] = {
    EscrowError: _escrow_error,
    Unauthenticated: _unauthenticated,
    RequestValidationError: _invalid,
    HTTPException: _http_error,
    StoreUnavailable: _unreachable,
    BodyTooLarge: _too_large,
    NotJSON: _not_json,
}


class Service(FastAPI):
    def __init__(self, **settings: Any) -> None:
        super().__init__(exception_handlers=REFUSALS, **settings)
        self.add_middleware(Edge)
        commands = Router(command_routes.ROUTES)
        self._commands = Edge(ExceptionMiddleware(commands, handlers=REFUSALS))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"].startswith(command_routes.PREFIX):
            scope["app"] = self  # as FastAPI sets it: the routes find the engine in its state
            await self._commands(scope, receive, send)
            return
        await super().__call__(scope, receive, send)
