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


def caller(request: Request, credentials: Credentials) -> Principal:
    principal = None
    if credentials is not None:
        principal = engine_of(request).keys.find(credentials.credentials)
    if principal is None:
        raise Unauthenticated
    return principal


def staff_or_platform(who: Principal) -> None:
    """Routes over every trader's business (the queue, the ledger, the log)."""
    if who.is_trader:
        raise NotAuthorized(f"{who.role}s may not read this")
