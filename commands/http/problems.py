"""Every refusal and error as `application/problem+json` (RFC 9457), with the engine's stable
`code` and `rule`: a caller in any language matches on `code`, exactly as Python callers match
on `EscrowError.code`."""

from __future__ import annotations

import logging
import sqlite3
import uuid
from typing import Any

import psycopg
import psycopg_pool
from eventsourcing.persistence import InterfaceError, OperationalError
from pydantic import BaseModel
from starlette.requests import Request
from starlette.responses import Response

from escrow.errors import EscrowError, ValidationError
from escrow.validated import InvalidFields

log = logging.getLogger("escrow.http")

MEDIA_TYPE = "application/problem+json"

# Engine codes that are not a rule's refusal (409); http.md's table.
STATUS = {
    "validation_error": 422,
    "not_found": 404,
    "not_authorized": 403,
    "engine_closed": 503,  # the server is shutting down
}

# What a store that does not answer raises, from the library or the drivers beneath it.
UNREACHABLE: tuple[type[BaseException], ...] = (
    OperationalError,
    InterfaceError,
    psycopg.OperationalError,
    psycopg_pool.PoolTimeout,
    sqlite3.OperationalError,
)


class BadParameter(ValidationError):
    """A query parameter the engine's queries cannot take; `fields` as InvalidCommand's."""

    def __init__(self, name: str, message: str) -> None:
        self.fields = [(name, message)]
        super().__init__(f"{name}: {message}")


class FieldError(BaseModel):
    field: str
    message: str


class Problem(BaseModel):
    """The body of every answer that is not a success."""

    type: str
    title: str
    status: int
    detail: str
    code: str
    rule: str | None = None
    errors: list[FieldError] | None = None
    id: str | None = None  # unexpected faults only: the same id is in the server's log


def problem(
    status: int,
    code: str,
    detail: str,
    *,
    rule: str | None = None,
    errors: list[tuple[str, str]] | None = None,
    fault: str | None = None,
    headers: dict[str, str] | None = None,
) -> Response:
    body = Problem(
        type=f"urn:escrow:problem:{code}",
        title=code.replace("_", " "),
        status=status,
        detail=detail,
        code=code,
        rule=rule,
        errors=None if errors is None else [FieldError(field=f, message=m) for f, m in errors],
        id=fault,
    )
    return Response(
        body.model_dump_json(exclude_none=True), status, headers=headers, media_type=MEDIA_TYPE
    )


def refusal(error: EscrowError) -> Response:
    """An engine refusal: its code, its rule, and for bad input the fields and why."""
    errors = error.fields if isinstance(error, InvalidFields | BadParameter) else None
    if error.code == "validation_error" and errors is None:
        errors = []
    return problem(
        STATUS.get(error.code, 409), error.code, error.message, rule=error.rule, errors=errors
    )


def unreachable() -> Response:
    return problem(503, "store_unavailable", "the store does not answer; nothing was recorded")


def fault(request: Request, error: BaseException) -> Response:
    """An unexpected fault: the trace goes to the server's log under an id, never to the caller."""
    if isinstance(error, UNREACHABLE):
        log.warning("store unreachable on %s %s: %s", request.method, _route(request), error)
        return unreachable()
    ident = uuid.uuid4().hex
    log.error("fault %s on %s %s", ident, request.method, _route(request), exc_info=error)
    return problem(
        500, "internal_error", f"unexpected fault; the server log has {ident}", fault=ident
    )


def _route(request: Request) -> str:
    route: Any = request.scope.get("route")
    return str(getattr(route, "path", "?"))


# Every answer a route may give besides its success, for the OpenAPI document.
def responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    why = {
        400: "the body is not JSON",
        401: "no or unknown token",
        403: "`not_authorized`",
        404: "not found, or not visible to the caller",
        409: "a rule refused the command (`code`, `rule`)",
        413: "the body is over 64 KiB",
        422: "`validation_error`, with `errors`; a reused Idempotency-Key",
        500: "an unexpected fault (its `id` is in the server log)",
        503: "the store does not answer; nothing was recorded",
    }
    schema = {"$ref": "#/components/schemas/Problem"}
    return {
        s: {"description": why[s], "content": {MEDIA_TYPE: {"schema": schema}}}
        for s in (*statuses, 401, 500, 503)
    }
