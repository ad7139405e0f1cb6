"""Query parameters: a route takes only those it declares. A misspelt filter (`?staet=paid`)
would otherwise be ignored and answer everything, which a caller takes for a filtered answer."""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from fastapi import Request

from escrow.commands.http.problems import BadParameter


def only(request: Request, known: Collection[str]) -> None:
    for name in request.query_params:
        if name not in known:
            raise BadParameter(name, "not a parameter of this route")


async def known_only(request: Request) -> None:  # a coroutine: see auth.caller
    """`only` the query parameters the FastAPI route declares."""
    route: Any = request.scope.get("route")
    only(request, {p.alias for p in route.dependant.query_params})
