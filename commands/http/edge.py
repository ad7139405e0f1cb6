"""What every request passes through: the access log (method, route template, status,
duration; never a header, so never a token) and the last resort for a fault no handler took,
which answers problem+json instead of a stack trace. Plain ASGI: a Starlette
`BaseHTTPMiddleware` costs more per request than some commands do."""

from __future__ import annotations

import logging
import time
from typing import Any

from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from escrow.commands.http.problems import fault

access = logging.getLogger("escrow.http.access")


class Edge:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 0

        async def sending(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, sending)
        except Exception as error:
            if status:  # the answer had begun (a stream): nothing more can be said on it
                raise
            response = fault(Request(scope), error)
            await response(scope, receive, sending)
        finally:
            if access.isEnabledFor(logging.INFO):
                route: Any = scope.get("route")
                path = getattr(route, "path", "-")
                ms = (time.perf_counter() - start) * 1000
                access.info(
                    "%s %s %d %.1fms",
                    scope["method"],
                    path,
                    status,
                    ms,
                    extra={
                        "method": scope["method"],
                        "route": path,
                        "status": status,
                        "duration_ms": round(ms, 3),
                    },
                )
