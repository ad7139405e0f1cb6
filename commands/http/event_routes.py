"""The event log over HTTP: pages (`GET /v1/events`) and a live Server-Sent Events stream whose
`id:` is the event's position, so a client that reconnects with `Last-Event-ID` continues
exactly after the last event it got: no gap, no duplicate.

A stream wakes when this process records a command, and polls the log every POLL seconds for
what other processes (workers, other backends) record."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import APIRouter, Depends, Header, Query, Request
from starlette.responses import Response, StreamingResponse

from escrow.commands.events import EventFeed
from escrow.commands.http.answers import EventPage
from escrow.commands.http.auth import caller, engine_of, staff_or_platform
from escrow.commands.http.engine import Engine
from escrow.commands.http.keys import Principal
from escrow.commands.http.params import known_only
from escrow.commands.http.problems import BadParameter, responses

POLL = 0.5  # seconds between two reads of the log when nothing woke the stream
KEEP_ALIVE = 15.0  # seconds of silence before a comment line keeps proxies from closing
PAGE = 200

Staff = Annotated[Principal, Depends(caller)]
Position = Annotated[int, Query(ge=0, description="Events after this position.")]

router = APIRouter(
    tags=["events"], responses=responses(403, 422), dependencies=[Depends(known_only)]
)


class Wakeup:
    """Tells waiting streams that this process has just committed; safe from any thread."""

    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._event = asyncio.Event()

    def notify(self) -> None:
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._fire)

    def _fire(self) -> None:
        self._event.set()
        self._event = asyncio.Event()

    async def wait(self, timeout: float) -> None:
        self._loop = asyncio.get_running_loop()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._event.wait(), timeout)


def feed_of(request: Request) -> EventFeed:
    feed: EventFeed | None = getattr(request.app.state, "feed", None)
    if feed is None:
        engine: Engine = engine_of(request)
        feed = request.app.state.feed = EventFeed(engine.history())
    return feed


@router.get("/v1/events", response_model=EventPage)
def events(
    who: Staff,
    request: Request,
    after: Position = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> Response:
    """The log from position `after`, oldest first; pass `next` as `after` for the next page."""
    staff_or_platform(who)
    feed = feed_of(request)
    page, read_up_to = feed.read(after, limit)
    body = EventPage(events=page, next=read_up_to, head=feed.head())
    return Response(body.model_dump_json(), 200, media_type="application/json")


@router.get(
    "/v1/events/stream",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/event-stream": {}}, "description": "the live log"}},
)
async def stream(
    who: Staff,
    request: Request,
    after: Position = 0,
    last_event_id: Annotated[str | None, Header(alias="Last-Event-ID")] = None,
) -> StreamingResponse:
    """The log as Server-Sent Events from `after` (or `Last-Event-ID`), then live."""
    staff_or_platform(who)
    if last_event_id is not None:
        if not last_event_id.isdigit():
            raise BadParameter("Last-Event-ID", "an event position this stream sent")
        after = int(last_event_id)
    engine = engine_of(request)
    feed = await engine.call(feed_of, request)
    wakeup: Wakeup = request.app.state.wakeup

    async def lines(position: int) -> AsyncIterator[str]:
        quiet = 0.0
        while True:
            page, read_up_to = await engine.call(feed.read, position, PAGE)
            for event in page:
                yield f"id: {event['position']}\nevent: {event['type']}\ndata: {json.dumps(event)}\n\n"
            position = read_up_to
            if len(page) == PAGE:
                continue
            if quiet >= KEEP_ALIVE:
                quiet = 0.0
                yield ": keep-alive\n\n"
            await wakeup.wait(POLL)
            quiet += POLL

    return StreamingResponse(
        lines(after), media_type="text/event-stream", headers={"Cache-Control": "no-store"}
    )
