"""What the routes answer, as pydantic models (the OpenAPI document is generated from them).
The engine's own views are reused as they are; these only bundle them."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict

from escrow.projections.appeal_queue import ComplaintQueueItem, QueueItem
from escrow.projections.orders import OrderRow
from escrow.projections.traders import TraderStats
from escrow.views import AppealView, ComplaintView, LedgerView, OrderView, Outcome, TraderView


class Answer(BaseModel):
    model_config = ConfigDict(frozen=True)


class CommandAnswer(Outcome):
    """The command's outcome (the events it recorded) and the views of what it changed, as that
    command left them (a replayed answer: as the first time)."""

    order: OrderView | None = None
    appeal: AppealView | None = None
    complaint: ComplaintView | None = None
    traders: list[TraderView] = []


class OrderPage(Answer):
    orders: list[OrderRow]
    next: str | None  # the `after` of the next page; none on the last page


class Allowed(Answer):
    order: str
    actor: str
    commands: list[str]
    appeal_reasons: list[str]  # what `open_appeal` accepts now; empty when it is not allowed


class AppealAllowed(Answer):
    appeal: str
    actor: str
    commands: list[str]


class Me(Answer):
    """Who the token is: what a client shows, and which of its views apply (a trader's own
    record; the queue and the log for everyone else)."""

    name: str
    role: str


class Timeline(Answer):
    order: str
    events: list[dict[str, Any]]  # as `escrow audit timeline --json` writes them (Entry.as_json)


class Queue(Answer):
    appeals: list[QueueItem]
    complaints: list[ComplaintQueueItem]


class ComplaintAllowed(Answer):
    complaint: str
    actor: str
    commands: list[str]


class TraderRecord(TraderView):
    figures: TraderStats


class Ledger(Answer):
    assets: list[LedgerView]


class Health(Answer):
    status: str


class EventPage(Answer):
    events: list[dict[str, Any]]  # one object per event, in log order
    next: int  # the `after` of the next page (the last position here, or the one asked)
    head: int  # the log's last position now: `after` for a stream of only what comes next
