"""The relay: every event of the log into a NATS JetStream stream, once, in log order.

Exactly once into the stream rests on three things, none of them the broker's duplicate window:
- the position is recorded in the store only after the server acknowledged everything up to it;
- on every (re)start the relay reads the stream's last message and resumes after the larger of
  the recorded position and that message's position (its `Nats-Msg-Id`, `escrow:POSITION`), so
  what a crash left published but unrecorded is never sent again;
- every message carries `Nats-Expected-Last-Sequence`: the server stores it only right after
  the message before it. Publishing is pipelined (a batch goes out before its acks come back),
  so a connection that drops mid-batch could otherwise leave a gap (one message lost on the
  dead socket, a later one flushed after a reconnect) that the last message would then hide;
  with the expectation every later message is refused instead, and the relay starts again from
  the stream's real end. The stream therefore always holds a prefix of the log, without a gap.
The `Nats-Msg-Id` still lets the broker drop an exact repeat within its window.

Waking up: on PostgreSQL the library's recorder NOTIFYs its channel inside every inserting
transaction (its insert function does, with `POSTGRES_ENABLE_DB_FUNCTIONS`, as the engine's
stores are configured), and PostgreSQL delivers a NOTIFY only when that transaction commits:
the relay LISTENs, so each commit wakes it, with no trigger or extra statement of ours on the
write path. A notification can be missed (the LISTEN connection dropped while events were
committed), so a poll every `poll` seconds reads the log anyway. SQLite has no such signal and
is polled.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import msgspec
import nats
import nats.errors
import nats.js.errors
import psycopg
import psycopg_pool
from eventsourcing.persistence import PersistenceError
from nats.js.api import StorageType, StreamConfig
from psycopg import sql

from escrow.application import EscrowApplication
from escrow.commands.audit.history import History, event_name
from escrow.commands.events import EventJson
from escrow.errors import ValidationError
from escrow.log import Row
from escrow.projections.follower import Follower
from escrow.projections.readstore import PostgresReadStore, ReadStore
from escrow.store import mask, parse_store_url

log = logging.getLogger("escrow.relay")

MSG_ID = "Nats-Msg-Id"
EXPECTED_SEQUENCE = "Nats-Expected-Last-Sequence"
ID_PREFIX = "escrow:"
BACKOFF = (0.2, 0.5, 1.0, 2.0, 5.0)  # seconds before each new attempt after a failure
# What a broker or store restart raises; anything else is a bug and stops the relay.
OUTAGES: tuple[type[BaseException], ...] = (
    nats.errors.Error,
    nats.js.errors.Error,
    TimeoutError,
    OSError,
    psycopg.Error,
    psycopg_pool.PoolTimeout,
    sqlite3.OperationalError,
    PersistenceError,
)


class Refused(nats.errors.Error):
    """The server refused a message (not the one expected next, or any other error): the
    relay starts again from the stream's end, like after an outage of the broker."""


def subject(prefix: str, event: dict[str, Any]) -> str:
    """`PREFIX.KIND.EVENT`: `escrow.order.Released` for `escrow:Order.Released.v1`."""
    return f"{prefix}.{event['kind']}.{event_name(event['type']).rsplit('.', 1)[-1]}"


def tracking_name(stream: str) -> str:
    """The relay's row in escrow_tracking: one position per NATS stream it feeds."""
    return f"relay:{stream}"


@dataclass(frozen=True)
class Status:
    position: int
    head: int

    @property
    def lag(self) -> int:
        return max(self.head - self.position, 0)


@dataclass
class _Batch:
    last: int  # the log position read up to (receipts after the last event included)
    events: list[tuple[str, bytes, int]]  # (subject, payload, position)


class Relay:
    def __init__(
        self,
        store: str,
        nats_url: str,
        *,
        stream: str = "ESCROW",
        prefix: str = "escrow",
        batch: int = 1000,
        poll: float = 1.0,
        ack_timeout: float = 10.0,
    ) -> None:
        config = parse_store_url(store)
        if config.backend == "memory":
            raise ValidationError("a memory: store lives inside one process: nothing to relay")
        self.store_url, self.nats_url = store, nats_url
        self.stream, self.prefix = stream, prefix
        self.poll, self.ack_timeout = poll, ack_timeout
        self.app = EscrowApplication(env=config.env)
        self.read = ReadStore.open(config)
        self.follower = Follower(self.app, self.read, tracking_name(stream), batch=batch)
        self.json = EventJson(History(self.app))
        self.encode = msgspec.json.Encoder().encode
        self.stopping = asyncio.Event()

    def close(self) -> None:
        self.read.close()
        self.app.close()

    def stop(self) -> None:
        """Finish the batch in hand, then return from `run` (call it on the relay's loop)."""
        self.stopping.set()

    async def run(self) -> None:
        """Relay until `stop`, starting again after any outage of the broker or the store."""
        log.info(
            "relaying %s to %s (stream %s, subjects %s.>)",
            mask(self.store_url),
            mask(self.nats_url),
            self.stream,
            self.prefix,
        )
        failures = 0

        def connected() -> None:
            nonlocal failures
            failures = 0

        while not self.stopping.is_set():
            try:
                await self._session(connected)
            except OUTAGES as e:
                delay = BACKOFF[min(failures, len(BACKOFF) - 1)]
                failures += 1
                log.warning(
                    "relay interrupted (%s: %s); again in %.1f s", type(e).__name__, e, delay
                )
                await self._sleep(delay)
        log.info("stopped")

    async def _session(self, connected: Callable[[], None]) -> None:
        """One connection to the broker: resume where the stream and the store say, then
        publish batch after batch until stopped or interrupted."""
        nc = await nats.connect(
            self.nats_url, allow_reconnect=False, connect_timeout=2, max_reconnect_attempts=0
        )
        try:
            js = nc.jetstream(timeout=self.ack_timeout, publish_async_max_pending=100_000)
            after, sequence = await self._resume(js)
            connected()
            log.info("connected; resuming after position %d (stream sequence %d)", after, sequence)
            async with self._wakeups() as wakeups:
                ahead = self._read_ahead(after, wakeups)
                try:
                    while not self.stopping.is_set():
                        batch = await ahead
                        if batch is None:
                            await wakeups.wait()
                            ahead = self._read_ahead(after, wakeups)
                            continue
                        acks, sequence = await self._send(js, batch, sequence)
                        # The next batch is read and encoded while these acks come back.
                        ahead = self._read_ahead(batch.last, wakeups)
                        await self._confirm(acks, batch)
                        await asyncio.to_thread(self.follower.advance, batch.last)
                        after = batch.last
                finally:
                    with contextlib.suppress(Exception):
                        await ahead  # its thread uses the store: let it finish first
        finally:
            await nc.close()

    async def _resume(self, js: Any) -> tuple[int, int]:
        """(position to publish after, the stream's last sequence), creating the stream if
        it does not exist; the recorded position is moved up to what the stream holds."""
        try:
            info = await js.stream_info(self.stream)
        except nats.js.errors.NotFoundError:
            info = await js.add_stream(
                StreamConfig(
                    name=self.stream, subjects=[f"{self.prefix}.>"], storage=StorageType.FILE
                )
            )
            log.info("created stream %s (subjects %s.>, file storage)", self.stream, self.prefix)
        sequence = int(info.state.last_seq or 0)
        published = 0
        if sequence:
            last = await js.get_msg(self.stream, seq=sequence)
            published = position_of((last.headers or {}).get(MSG_ID))
        recorded = await asyncio.to_thread(self.follower.position)
        if published > recorded:
            log.info("the stream holds up to %d, recorded %d: recording it", published, recorded)
            await asyncio.to_thread(self.follower.advance, published)
        return max(published, recorded), sequence

    def _read(self, after: int) -> _Batch | None:
        """The next batch of the log as messages (in a worker thread: it blocks on the store)."""
        rows: list[Row] = self.follower.rows(after)
        if not rows:
            return None
        events = []
        for row in rows:
            event = self.json.row(row)
            if event is not None:
                events.append((subject(self.prefix, event), self.encode(event), row[0]))
        return _Batch(rows[-1][0], events)

    def _read_ahead(self, after: int, wakeups: _Polls) -> asyncio.Future[_Batch | None]:
        wakeups.clear()  # before the read: a commit it misses wakes the next wait
        return asyncio.ensure_future(asyncio.to_thread(self._read, after))

    async def _send(
        self, js: Any, batch: _Batch, sequence: int
    ) -> tuple[list[asyncio.Future[Any]], int]:
        """Publish the batch without waiting between messages; returns the futures of their
        acks and the stream's last sequence once they are all stored."""
        acks = []
        for subject_, payload, position in batch.events:
            headers = {MSG_ID: f"{ID_PREFIX}{position}", EXPECTED_SEQUENCE: str(sequence)}
            acks.append(await js.publish_async(subject_, payload, headers=headers))
            sequence += 1
        return acks, sequence

    async def _confirm(self, acks: list[asyncio.Future[Any]], batch: _Batch) -> None:
        """Every message of the batch stored, as the next one of the stream, or `Refused`."""
        if not acks:
            return
        done = await asyncio.wait_for(
            asyncio.gather(*acks, return_exceptions=True), self.ack_timeout
        )
        for ack, (_, _, position) in zip(done, batch.events, strict=True):
            if isinstance(ack, BaseException):
                raise Refused(f"position {position}: {ack}") from ack
            if ack.duplicate:  # already stored: the expected sequence no longer holds
                raise Refused(f"position {position} was in the stream already")

    def _wakeups(self) -> _Polls:
        return _PostgresWakeups(self) if isinstance(self.read, PostgresReadStore) else _Polls(self)

    async def _sleep(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.stopping.wait(), seconds)


def status_of(store: str, stream: str = "ESCROW") -> Status:
    """The relay's recorded position and the log's head, without a broker."""
    config = parse_store_url(store)
    app = EscrowApplication(env=config.env)
    read = ReadStore.open(config)
    try:
        follower = Follower(app, read, tracking_name(stream))
        return Status(follower.position(), follower.head())
    finally:
        read.close()
        app.close()


def position_of(msg_id: str | None) -> int:
    """The position in a message id `escrow:POSITION` (0: not one of the relay's)."""
    if msg_id and msg_id.startswith(ID_PREFIX) and msg_id[len(ID_PREFIX) :].isdigit():
        return int(msg_id[len(ID_PREFIX) :])
    return 0


class _Polls:
    """SQLite: wait `poll` seconds (or until stopped)."""

    def __init__(self, relay: Relay) -> None:
        self.relay = relay

    async def __aenter__(self) -> _Polls:
        return self

    async def __aexit__(self, *exc: object) -> None:
        return None

    def clear(self) -> None:
        """Called before each read of the log (a commit after it must wake `wait`)."""

    async def wait(self) -> None:
        await self.relay._sleep(self.relay.poll)


class _PostgresWakeups(_Polls):
    """PostgreSQL: a listener task turns every NOTIFY (sent at each commit) into `woken`, so
    a commit that lands while the relay is busy still wakes the next `wait`; `poll` at most."""

    def __init__(self, relay: Relay) -> None:
        super().__init__(relay)
        self.woken = asyncio.Event()
        self.conn: psycopg.AsyncConnection[Any] | None = None
        self.listener: asyncio.Task[None] | None = None

    async def __aenter__(self) -> _PostgresWakeups:
        read = self.relay.read
        assert isinstance(read, PostgresReadStore)
        channel: str = getattr(self.relay.app.recorder, "channel_name")  # noqa: B009
        self.conn = await psycopg.AsyncConnection.connect(read.conninfo, autocommit=True)
        await self.conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(channel)))
        self.listener = asyncio.create_task(self._listen(self.conn))
        return self

    async def _listen(self, conn: psycopg.AsyncConnection[Any]) -> None:
        async for _ in conn.notifies():
            self.woken.set()

    def clear(self) -> None:
        self.woken.clear()

    async def wait(self) -> None:
        assert self.listener is not None
        if self.listener.done():
            self.listener.result()  # the LISTEN connection dropped: an outage of the store
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.woken.wait(), self.relay.poll)

    async def __aexit__(self, *exc: object) -> None:
        if self.listener is not None:
            self.listener.cancel()
            with contextlib.suppress(BaseException):
                await self.listener
        if self.conn is not None:
            await self.conn.close()
