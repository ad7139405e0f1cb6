"""Query parameters: a route takes only those it declares. A misspelt filter (`?staet=paid`)
would otherwise be ignored and answer everything, which a caller takes for a filtered answer."""

from __future__ import annotations

from typing import Any

from fastapi import Request

from escrow.commands.http.problems import BadParameter


def known_only(request: Request) -> None:
    route: Any = request.scope.get("route")
    known = {p.alias for p in route.dependant.query_params}
    for name in request.query_params:
        if name not in known:
            raise BadParameter(name, "not a parameter of this route")
