"""The application: its routes, health, metrics, and the OpenAPI document generated from the
command and view models (the refusals and the command path: service.py).

`create_app(store, keys)` builds one; `from_environment()` is the factory each uvicorn worker
process calls (`--workers N`), reading what `escrow serve` put in its environment.
"""

from __future__ import annotations

import html
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from importlib.metadata import version
from typing import Annotated, Any

from fastapi import Depends, FastAPI
from fastapi.openapi.utils import get_openapi
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    GC_COLLECTOR,
    PLATFORM_COLLECTOR,
    PROCESS_COLLECTOR,
    CollectorRegistry,
    generate_latest,
)
from pydantic.json_schema import models_json_schema
from starlette.responses import HTMLResponse, JSONResponse, Response

from escrow.commands.config import POLICY_ENV, load_policy
from escrow.commands.http import bodies, command_routes, console, event_routes, read_routes
from escrow.commands.http.answers import CommandAnswer, Health
from escrow.commands.http.auth import caller, staff_or_platform
from escrow.commands.http.engine import Engine
from escrow.commands.http.keys import Keys, Principal
from escrow.commands.http.problems import Problem
from escrow.commands.http.service import Service
from escrow.policy import Policy

STORE_ENV, KEYS_ENV = "ESCROW_HTTP_STORE", "ESCROW_HTTP_KEYS"


def create_app(store: str, keys: Keys, policy: Policy | None = None) -> Service:
    registry = CollectorRegistry()
    for collector in (PROCESS_COLLECTOR, PLATFORM_COLLECTOR, GC_COLLECTOR):
        registry.register(collector)
    engine = Engine(store, keys, metrics=registry, policy=policy)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        engine.open_soon()
        yield
        engine.close()

    app = Service(
        title="escrow",
        version=version("escrow"),
        summary="P2P escrow orders and appeals: commands, reads and the event log.",
        docs_url=None,
        redoc_url=None,
        lifespan=lifespan,
    )
    app.state.engine = engine
    app.state.wakeup = wakeup = event_routes.Wakeup()
    app.state.committed = wakeup.notify
    app.include_router(read_routes.router)
    app.include_router(event_routes.router)
    _health(app, engine)
    _metrics(app, engine, registry)
    console.mount(app)
    app.openapi = lambda: _openapi(app)  # type: ignore[method-assign]
    return app


def from_environment() -> Service:
    """The app of one worker process of `escrow serve --workers N`."""
    policy = os.environ.get(POLICY_ENV)
    return create_app(
        os.environ[STORE_ENV],
        Keys.load(os.environ[KEYS_ENV]),
        load_policy(policy) if policy else None,
    )


def _health(app: FastAPI, engine: Engine) -> None:
    @app.get("/healthz", response_model=Health, tags=["health"])
    async def healthz() -> Response:
        """200 while the process runs."""
        return JSONResponse({"status": "ok"})

    @app.get(
        "/readyz",
        response_model=Health,
        tags=["health"],
        responses={503: {"description": "the store does not answer", "model": Health}},
    )
    async def readyz() -> Response:
        """200 once the store answers, 503 while it does not."""
        if await engine.call(engine.ready):
            return JSONResponse({"status": "ready"})
        return JSONResponse({"status": "store unavailable"}, 503)

    @app.get("/docs", include_in_schema=False)
    def docs() -> HTMLResponse:
        """The routes, from the OpenAPI document, on a page that needs no network."""
        return HTMLResponse(_docs_page(app.openapi()))


def _metrics(app: FastAPI, engine: Engine, registry: CollectorRegistry) -> None:
    @app.get("/metrics", include_in_schema=False)
    async def metrics(who: Annotated[Principal, Depends(caller)]) -> Response:
        """Prometheus text exposition: commands and refusals by code, command latency,
        deadlines fired and due, read-model and relay lag, the process. A bearer token of a
        platform, agent or supervisor, like every read over all traders' business: the
        counts are business figures, and the port also serves traders."""
        staff_or_platform(who)
        body = await engine.call(generate_latest, registry)
        return Response(body, 200, media_type=CONTENT_TYPE_LATEST)


def _openapi(app: FastAPI) -> dict[str, Any]:
    if app.openapi_schema is None:
        schema = get_openapi(
            title=app.title,
            version=app.version,
            summary=app.summary,
            routes=app.routes,
            openapi_version="3.1.0",
        )
        schema["paths"] = {**command_routes.operations(), **schema["paths"]}
        components = schema.setdefault("components", {}).setdefault("schemas", {})
        components.update(bodies.schemas())
        _, answers = models_json_schema(
            [(CommandAnswer, "serialization"), (Problem, "serialization")], ref_template=bodies.REF
        )
        components.update(answers["$defs"])
        app.openapi_schema = schema
    return app.openapi_schema


def _docs_page(schema: dict[str, Any]) -> str:
    rows = "".join(
        f"<tr><td>{method.upper()}</td><td><code>{html.escape(path)}</code></td>"
        f"<td>{html.escape(op.get('summary', ''))}</td></tr>"
        for path, ops in schema["paths"].items()
        for method, op in ops.items()
    )
    return (
        "<!doctype html><meta charset=utf-8><title>escrow API</title>"
        f"<h1>escrow API {html.escape(schema['info']['version'])}</h1>"
        '<p>The OpenAPI 3.1 document: <a href="/openapi.json">/openapi.json</a> '
        "(load it into any OpenAPI viewer or client generator).</p>"
        f"<table border=1 cellpadding=4><tr><th>method</th><th>route</th><th>what</th></tr>{rows}"
        "</table>"
    )
