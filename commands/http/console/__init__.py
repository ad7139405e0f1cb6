"""The CS console (`/console`): static files the app serves as they are, so an exchange gets a
working back office from `escrow serve` alone, with no build step, CDN or second server.

The console is a client of the HTTP interface like any other: it reads with GETs, acts with
`POST /v1/commands/...` and decides nothing, so it can never drift from the rules the engine
enforces. What the server adds here is only how the files are sent: a Content-Security-Policy
that allows nothing but this origin (a token in the page must not be readable by a script from
elsewhere), and revalidation on every load, so a new release is never shadowed by a cached
script."""

from __future__ import annotations

from fastapi import FastAPI
from starlette.responses import RedirectResponse, Response
from starlette.staticfiles import StaticFiles
from starlette.types import Scope

PATH = "/console"
HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}


class ConsoleFiles(StaticFiles):
    async def get_response(self, path: str, scope: Scope) -> Response:
        response = await super().get_response(path, scope)
        response.headers.update(HEADERS)
        return response


def mount(app: FastAPI) -> None:
    """Serve the console under PATH (index.html at PATH/), outside the OpenAPI document."""

    @app.get(PATH, include_in_schema=False)
    def console() -> Response:
        return RedirectResponse(f"{PATH}/")

    app.mount(PATH, ConsoleFiles(packages=[(__name__, "static")], html=True), name="console")
