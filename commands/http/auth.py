"""Who is calling: the bearer token's principal, for every route but health and the docs."""

from __future__ import annotations

from typing import Annotated

from fastapi import Request, Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from escrow.commands.http.engine import Engine
from escrow.commands.http.keys import Principal
from escrow.errors import NotAuthorized

bearer = HTTPBearer(auto_error=False, description="A token of the keys file (`serve --keys`).")


class Unauthenticated(Exception):
    """No token, or one the keys file does not hold (answered 401)."""


def engine_of(request: Request) -> Engine:
    engine: Engine = request.app.state.engine
    return engine


Credentials = Annotated[HTTPAuthorizationCredentials | None, Security(bearer)]


def principal(request: Request) -> Principal:
    """The principal of the request's bearer token; Unauthenticated without a known one.
    The one reader of the Authorization header: the command routes call it as it is."""
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    found = engine_of(request).keys.find(token) if scheme.lower() == "bearer" and token else None
    if found is None:
        raise Unauthenticated
    return found


# The dependencies are coroutines although they never wait: FastAPI runs a plain function
# dependency in its thread pool, a hop per dependency per request for a dictionary lookup.


async def caller(request: Request, _: Credentials) -> Principal:
    """`principal`, for the FastAPI routes; the bearer scheme is declared (and parsed for
    nothing) so that the OpenAPI document says these routes need a token."""
    return principal(request)


async def running(request: Request) -> Engine:
    return engine_of(request)


def staff_or_platform(who: Principal) -> None:
    """Routes over every trader's business (the queue, the ledger, the log)."""
    if who.is_trader:
        raise NotAuthorized(f"{who.role}s may not read this")
