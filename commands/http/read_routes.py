"""The reads of http.md: aggregates as they are now, what the caller may do, and the read
models. A trader asking for what it is not a party to gets the same 404 as for what does not
exist, so ids cannot be probed.

A new kind of thing to read (complaints, when the engine has them) is one function here:
load its view, check `who.sees_parties(...)`, answer it."""

from __future__ import annotations

import base64
import binascii
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel
from starlette.responses import Response

from escrow.commands.api import Escrow
from escrow.commands.audit.history import timeline
from escrow.commands.http.answers import (
    Allowed,
    AppealAllowed,
    ComplaintAllowed,
    Ledger,
    Me,
    OrderPage,
    Queue,
    Timeline,
    TraderRecord,
)
from escrow.commands.http.auth import caller, running, staff_or_platform
from escrow.commands.http.engine import Engine
from escrow.commands.http.keys import Principal
from escrow.commands.http.params import known_only
from escrow.commands.http.problems import BadParameter, responses
from escrow.errors import NotFound
from escrow.views import AppealView, ComplaintView, OrderView
from escrow.vocabulary import OrderState

Caller = Annotated[Principal, Depends(caller)]
Running = Annotated[Engine, Depends(running)]
State = Annotated[OrderState | None, Query(description="Only orders in this state.")]
Limit = Annotated[int, Query(ge=1, le=500)]

router = APIRouter(
    tags=["reads"], responses=responses(403, 404, 422), dependencies=[Depends(known_only)]
)


def _json(answer: BaseModel, headers: dict[str, str] | None = None) -> Response:
    return Response(answer.model_dump_json(), 200, headers, "application/json")


def _visible(
    escrow: Escrow, kind: str, ref: str, who: Principal
) -> OrderView | AppealView | ComplaintView:
    """The view of an order, appeal or complaint, if `who` is a party to its order or staff;
    otherwise the same 404 as for one that does not exist."""
    view: OrderView | AppealView | ComplaintView = getattr(escrow, kind)(ref)
    order = view if isinstance(view, OrderView) else escrow.order(view.order)
    if not who.sees_parties(order.seller, order.buyer):
        raise NotFound(f"no {kind} {ref!r}")
    return view


def _allowed(escrow: Escrow, kind: str, ref: str, who: Principal) -> list[str]:
    """What `who` may issue on an order, appeal or complaint it may see (404 otherwise)."""
    _visible(escrow, kind, ref, who)
    return escrow.allowed(who.name, **{kind: ref})


@router.get("/v1/orders/{order}", response_model=OrderView)
def order(order: str, who: Caller, engine: Running) -> Response:
    """The order now; its ETag is its version."""
    view = _visible(engine.get(), "order", order, who)
    return _json(view, {"ETag": f'"{view.version}"'})


@router.get("/v1/orders", response_model=OrderPage)
def orders(
    who: Caller,
    engine: Running,
    state: State = None,
    trader: str | None = None,
    limit: Limit = 100,
    after: str | None = None,
) -> Response:
    """Orders newest first (a trader's own only), a page at a time: pass `next` as `after`."""
    if who.is_trader:
        if trader not in (None, who.name):
            return _json(OrderPage(orders=[], next=None))
        trader = who.name
    rows = engine.get().orders(
        state=state, trader=trader, limit=limit, after=_cursor(after) if after else None
    )
    last = rows[-1] if len(rows) == limit else None
    return _json(OrderPage(orders=rows, next=_next(last.created_at, last.order) if last else None))


def _next(created_at: datetime, ref: str) -> str:
    return base64.urlsafe_b64encode(f"{created_at.isoformat()}|{ref}".encode()).decode()


def _cursor(text: str) -> tuple[datetime, str]:
    try:
        created_at, ref = base64.urlsafe_b64decode(text.encode()).decode().split("|", 1)
        return datetime.fromisoformat(created_at), ref
    except (ValueError, binascii.Error, UnicodeError):
        raise BadParameter("after", "not a cursor this service gave") from None


@router.get("/v1/orders/{order}/timeline", response_model=Timeline)
def order_timeline(order: str, who: Caller, engine: Running) -> Response:
    """Every event of the order and its appeals (and the sanctions they caused), oldest first."""
    _visible(engine.get(), "order", order, who)
    entries = [e.as_json() for e in timeline(engine.history(), order)]
    return _json(Timeline(order=order, events=entries))


@router.get("/v1/orders/{order}/allowed", response_model=Allowed)
def allowed(order: str, who: Caller, engine: Running) -> Response:
    """The commands the caller may issue on the order now, and the reasons it may open an
    appeal for (A3, A6, A7, C6), each one that `open_appeal` accepts."""
    escrow = engine.get()
    commands = _allowed(escrow, "order", order, who)
    reasons = escrow.appeal_reasons(who.name, order) if "open_appeal" in commands else []
    return _json(Allowed(order=order, actor=who.name, commands=commands, appeal_reasons=reasons))


@router.get("/v1/appeals/{appeal}", response_model=AppealView)
def appeal(appeal: str, who: Caller, engine: Running) -> Response:
    view = _visible(engine.get(), "appeal", appeal, who)
    return _json(view, {"ETag": f'"{view.version}"'})


@router.get("/v1/appeals/{appeal}/allowed", response_model=AppealAllowed)
def appeal_allowed(appeal: str, who: Caller, engine: Running) -> Response:
    """The commands the caller may issue on the appeal now."""
    commands = _allowed(engine.get(), "appeal", appeal, who)
    return _json(AppealAllowed(appeal=appeal, actor=who.name, commands=commands))


@router.get("/v1/complaints/{complaint}", response_model=ComplaintView)
def complaint(complaint: str, who: Caller, engine: Running) -> Response:
    view = _visible(engine.get(), "complaint", complaint, who)
    return _json(view, {"ETag": f'"{view.version}"'})


@router.get("/v1/complaints/{complaint}/allowed", response_model=ComplaintAllowed)
def complaint_allowed(complaint: str, who: Caller, engine: Running) -> Response:
    """The commands the caller may issue on the complaint now."""
    commands = _allowed(engine.get(), "complaint", complaint, who)
    return _json(ComplaintAllowed(complaint=complaint, actor=who.name, commands=commands))


@router.get("/v1/me", response_model=Me)
def me(who: Caller) -> Response:
    """The token's principal: its name and role."""
    return _json(Me(name=who.name, role=who.role))


@router.get("/v1/queue", response_model=Queue)
def queue(who: Caller, engine: Running, limit: Limit = 100) -> Response:
    """Open appeals, oldest first, with what each waits on and when it is due, and undecided
    complaints, earliest response deadline first (CS only)."""
    staff_or_platform(who)
    escrow = engine.get()
    return _json(
        Queue(
            appeals=escrow.appeal_queue(limit=limit),
            complaints=escrow.complaint_queue(limit=limit),
        )
    )


@router.get("/v1/traders/{name}", response_model=TraderRecord)
def trader(name: str, who: Caller, engine: Running) -> Response:
    """Sanctions, `can_trade` and figures (a trader: its own record only)."""
    if not who.sees_parties(name):
        raise NotFound(f"no trader {name!r}")
    escrow = engine.get()
    view = escrow.trader(name)
    return _json(TraderRecord(**dict(view), figures=escrow.trader_stats(name)))


@router.get("/v1/ledger", response_model=Ledger)
def ledger(who: Caller, engine: Running) -> Response:
    """Escrow totals per asset (CS and the platform)."""
    staff_or_platform(who)
    return _json(Ledger(assets=engine.get().ledgers()))
