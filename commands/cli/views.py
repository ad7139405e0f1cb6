"""`escrow views orders|appeals|traders|ledger` (what CS reads) and
`escrow projections run|rebuild|status` (keeping the read models).

Views print rich tables, or with `--json` one JSON document (a list of objects, or one object
for a single trader) for scripts. They read the read-model tables of the `--store` given to
`escrow`, after projecting whatever the log holds that they have not seen yet.
"""

from __future__ import annotations

import json
import signal
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import click
from pydantic import BaseModel
from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from escrow.application import EscrowApplication
from escrow.clock import bounded
from escrow.commands.api import Escrow
from escrow.commands.cli.store import store_of, uses_store
from escrow.commands.logs import configure
from escrow.durations import bounded_duration, format_duration
from escrow.errors import EscrowError
from escrow.faults import store_faults
from escrow.projections.appeal_queue import WAITS
from escrow.projections.base import Projector
from escrow.projections.catalog import NAMES, read_models
from escrow.projections.readstore import ReadStore
from escrow.projections.runner import Runner
from escrow.projections.traders import SORTS
from escrow.store import mask, parse_store_url
from escrow.vocabulary import OrderState, Reason

WAITS_ON = sorted({w for w, _ in WAITS.values()} | {"refund_confirmation"})


def _console() -> Console:
    return Console(highlight=False, soft_wrap=True)


@contextmanager
def _engine(ctx: click.Context) -> Iterator[Escrow]:
    """The engine on an existing store: a view never creates one."""
    try:
        engine = Escrow(store_of(ctx), create=False)
    except EscrowError as e:
        raise click.ClickException(str(e)) from e
    try:
        yield engine
    except EscrowError as e:
        raise click.ClickException(str(e)) from e
    finally:
        engine.close()


NOW = "now"
AT_HELP = (
    "ISO 8601 time, or 'now'; default the time of the store's last event (a simulated "
    "store reads at its simulated time)."
)


def _at(value: str | None) -> datetime | None:
    """`--at`: a time, "now" (the wall clock), or None (then `_store_time`)."""
    if value is None:
        return None
    if value.strip().lower() == NOW:
        return datetime.now(UTC)
    try:
        return bounded(datetime.fromisoformat(value), "--at")
    except (ValueError, EscrowError) as e:
        problem = e.message if isinstance(e, EscrowError) else str(e)
        raise click.BadParameter(
            f"{value!r}: {problem} (use e.g. 2026-03-01T10:00:00Z)", param_hint="--at"
        ) from e


def _store_time(engine: Escrow) -> datetime:
    """The time of the store's last event, where views measure ages and windows by default:
    what the store knows, the same on every machine that reads it. On a live store it is
    seconds behind the wall clock (every command and every deadline fired records one); on
    a simulated store it is the simulated time (`escrow simulate`); on an empty one, now."""
    head = engine.app.recorder.max_notification_id()
    if not head:
        return datetime.now(UTC)
    (last,) = engine.app.recorder.select_notifications(start=head, limit=1)
    event: Any = engine.app.mapper.to_domain_event(last)
    moment: datetime = event.timestamp
    return moment


def _json(items: BaseModel | Sequence[BaseModel]) -> None:
    data: Any = (
        items.model_dump(mode="json")
        if isinstance(items, BaseModel)
        else [i.model_dump(mode="json") for i in items]
    )
    click.echo(json.dumps(data, indent=2))


def _time(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M") if value else ""


def _num(value: Decimal | None) -> str:
    """Plain digits with thousands separators; a zero is `0` whatever its exponent."""
    if value is None:
        return ""
    return f"{value:,f}" if value else "0"


def _text(value: object) -> str:
    return "" if value is None else escape(str(value))


# --- views --------------------------------------------------------------------------------


@click.group()
def views() -> None:
    """Read models as CS and the exchange see them: orders, the appeal queue, traders, ledger."""


@views.command()
@uses_store()
@click.option("--state", type=click.Choice([s.value for s in OrderState]), help="Only this state.")
@click.option("--trader", help="Only orders this trader is a party to (either side).")
@click.option("--asset", help="Only this asset.")
@click.option("--limit", type=click.IntRange(1), default=50, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@click.pass_context
def orders(
    ctx: click.Context,
    state: str | None,
    trader: str | None,
    asset: str | None,
    limit: int,
    as_json: bool,
) -> None:
    """Orders, newest first."""
    with _engine(ctx) as engine:
        rows = engine.orders(state=state, trader=trader, limit=limit, asset=asset)
    if as_json:
        _json(rows)
        return
    table = Table(title=f"orders ({len(rows)} shown, newest first)")
    for column in ("order", "state", "seller", "buyer"):
        table.add_column(column)
    table.add_column("amount", justify="right")
    table.add_column("fiat amount", justify="right")
    for column in ("appeal", "created", "closed"):
        table.add_column(column)
    for r in rows:
        table.add_row(
            _text(r.order),
            r.state,
            _text(r.seller),
            _text(r.buyer),
            f"{_num(r.amount)} {_text(r.asset)}",
            f"{_num(r.fiat_amount)} {_text(r.fiat)}",
            _text(r.open_appeal),
            _time(r.created_at),
            _time(r.closed_at),
        )
    _console().print(table)


@views.command()
@uses_store()
@click.option("--reason", type=click.Choice([r.value for r in Reason]), help="Only this reason.")
@click.option("--older-than", help="Only appeals open at least this long, e.g. 2h, 1d.")
@click.option("--agent", help="Only appeals this agent has in review.")
@click.option("--unassigned", is_flag=True, help="Only appeals no agent has taken yet.")
@click.option("--trader", help="Only appeals on this trader's orders (either side).")
@click.option("--waits-on", type=click.Choice(WAITS_ON), help="Only appeals waiting on this.")
@click.option("--at", "at_text", help=f"Measure ages at this time: {AT_HELP}")
@click.option("--limit", type=click.IntRange(1), default=100, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@click.pass_context
def appeals(
    ctx: click.Context,
    reason: str | None,
    older_than: str | None,
    agent: str | None,
    unassigned: bool,
    trader: str | None,
    waits_on: str | None,
    at_text: str | None,
    limit: int,
    as_json: bool,
) -> None:
    """The open-appeal queue, oldest first, with what each waits on and its next deadline."""
    try:
        age = bounded_duration(older_than) if older_than else None
    except ValueError as e:
        raise click.BadParameter(str(e), param_hint="--older-than") from e
    at = _at(at_text)
    with _engine(ctx) as engine:
        at = at or _store_time(engine)
        items = engine.appeal_queue(
            reason=reason,
            older_than=age,
            agent=agent,
            unassigned=unassigned,
            trader=trader,
            waits_on=waits_on,
            limit=limit,
            at=at,
        )
    if as_json:
        _json(items)
        return
    table = Table(title=f"open appeals at {_time(at)} UTC ({len(items)} shown, oldest first)")
    for column in ("appeal", "order", "reason", "opener", "age", "state", "agent"):
        table.add_column(column)
    table.add_column("waits on")
    table.add_column("due")
    for i in items:
        table.add_row(
            _text(i.appeal),
            _text(i.order),
            i.reason,
            f"{_text(i.opener)} ({i.side})",
            format_duration(i.age) if i.age.total_seconds() >= 0 else "",
            i.state,
            _text(i.agent) or "[dim]unassigned[/]",
            f"{i.waits_on} ({i.waits_for})",
            _time(i.due_at),
        )
    _console().print(table)


@views.command()
@uses_store()
@click.argument("names", nargs=-1)
@click.option("--sort", type=click.Choice(list(SORTS)), default="name", show_default=True)
@click.option("--limit", type=click.IntRange(1), default=50, show_default=True)
@click.option("--at", "at_text", help=f"30-day window and sanctions at this time: {AT_HELP}")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@click.pass_context
def traders(
    ctx: click.Context,
    names: tuple[str, ...],
    sort: str,
    limit: int,
    at_text: str | None,
    as_json: bool,
) -> None:
    """Trader figures: NAMES, or the first --limit traders by --sort."""
    at = _at(at_text)
    with _engine(ctx) as engine:
        at = at or _store_time(engine)
        if names:
            stats = [engine.trader_stats(name, at) for name in names]
        else:
            stats = engine.traders(sort=sort, limit=limit, at=at)
    if as_json:
        _json(stats[0] if len(names) == 1 else stats)
        return
    table = Table(title=f"traders at {_time(at)} UTC (30-day completion rate then)")
    table.add_column("trader")
    for column in ("orders", "done", "cancelled", "30d rate", "pay s", "release s"):
        table.add_column(column, justify="right")
    table.add_column("appeals opened/won/lost", justify="right")
    table.add_column("active sanctions")
    for s in stats:
        rate = "" if s.completion_rate_30d is None else f"{s.completion_rate_30d * 100:.1f}%"
        sanctions = ", ".join(
            f"{x.kind} until {_time(x.expires_at)}" if x.expires_at else f"{x.kind} (until lifted)"
            for x in s.sanctions
        )
        table.add_row(
            _text(s.trader),
            str(s.orders),
            str(s.completed),
            str(s.cancelled),
            rate,
            _num(s.avg_pay_seconds),
            _num(s.avg_release_seconds),
            f"{s.appeals_opened}/{s.appeals_won}/{s.appeals_lost}",
            sanctions or "[dim]none[/]",
        )
    _console().print(table)


@views.command()
@uses_store()
@click.option("--order", help="Movement lines of this order.")
@click.option("--asset", help="Only this asset (totals, or lines with --lines).")
@click.option("--lines", "show_lines", is_flag=True, help="Movement lines instead of totals.")
@click.option("--limit", type=click.IntRange(1), default=100, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@click.pass_context
def ledger(
    ctx: click.Context,
    order: str | None,
    asset: str | None,
    show_lines: bool,
    limit: int,
    as_json: bool,
) -> None:
    """Escrow per asset (in escrow, released, returned), or movement lines (--lines, --order)."""
    with _engine(ctx) as engine:
        if show_lines or order:
            lines = engine.ledger_lines(order=order, asset=asset, limit=limit)
            if as_json:
                _json(lines)
                return
            table = Table(title="escrow movements (newest first)")
            for column in ("at", "order", "movement", "amount", "asset", "event"):
                table.add_column(column, justify="right" if column == "amount" else "left")
            for line in lines:
                table.add_row(
                    _time(line.at),
                    _text(line.order),
                    line.movement,
                    _num(line.amount),
                    _text(line.asset),
                    f"v{line.version}",
                )
            _console().print(table)
            return
        totals = [t for t in engine.ledgers() if asset is None or t.asset == asset]
    if as_json:
        _json(totals)
        return
    table = Table(title="escrow ledger")
    table.add_column("asset")
    for column in ("in escrow", "released", "returned"):
        table.add_column(column, justify="right")
    for t in totals:
        table.add_row(_text(t.asset), _num(t.in_escrow), _num(t.released), _num(t.returned))
    _console().print(table)


# --- projections --------------------------------------------------------------------------


@click.group()
def projections() -> None:
    """Keep the read models: follow the log, rebuild, show positions."""


@contextmanager
def _projector(ctx: click.Context) -> Iterator[Projector]:
    """The read models of an existing store (status and rebuild never create one)."""
    try:
        config = parse_store_url(store_of(ctx))
        app = EscrowApplication.open(config, create=False)
    except EscrowError as e:
        raise click.ClickException(str(e)) from e
    try:
        with store_faults(config):
            read = ReadStore.open(config)
            try:
                yield Projector(app, read, read_models())
            finally:
                read.close()
    except EscrowError as e:
        raise click.ClickException(str(e)) from e
    finally:
        app.close()


def _check_names(names: Sequence[str]) -> None:
    unknown = [n for n in names if n not in NAMES]
    if unknown:
        raise click.BadParameter(
            f"{', '.join(unknown)} (read models: {', '.join(NAMES)})", param_hint="NAME"
        )


@projections.command()
@uses_store()
@click.argument("names", nargs=-1, metavar="[NAME]...")
@click.option(
    "--batch",
    type=click.IntRange(1),
    default=1000,
    show_default=True,
    help="Events per transaction.",
)
@click.option(
    "--poll",
    type=click.FloatRange(0.01),
    default=1.0,
    show_default=True,
    help="Seconds between polls (PostgreSQL also wakes on NOTIFY).",
)
@click.option("--until-idle", is_flag=True, help="Stop once every read model has caught up.")
@click.option("--quiet", is_flag=True, help="No line per batch.")
@click.pass_context
def run(
    ctx: click.Context,
    names: tuple[str, ...],
    batch: int,
    poll: float,
    until_idle: bool,
    quiet: bool,
) -> None:
    """Follow the event log and project new events as they are committed (Ctrl-C stops
    after the batch in hand; a killed runner resumes where its last batch committed)."""
    _check_names(names)
    configure()  # a service: INFO unless ESCROW_LOG_LEVEL says otherwise (checked by `escrow`)
    console = _console()
    try:
        runner = Runner(store_of(ctx), names=names, batch=batch, poll=poll)
    except EscrowError as e:
        raise click.ClickException(str(e)) from e

    def report(events: int, seconds: float, position: int, head: int) -> None:
        console.print(
            f"projected {events} events: position {position}, {max(head - position, 0)} behind"
        )

    def stop(signum: int, frame: Any) -> None:
        runner.stop()

    previous = {s: signal.signal(s, stop) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        if not quiet:
            shown = escape(mask(store_of(ctx)))
            console.print(f"following {shown} ({', '.join(names or NAMES)})")
        total = runner.run(until_idle=until_idle, report=None if quiet else report)
    except EscrowError as e:
        raise click.ClickException(str(e)) from e
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
        runner.close()
    if not quiet:
        console.print(f"stopped after {total} events")


@projections.command()
@uses_store()
@click.argument("names", nargs=-1, metavar="[NAME]...")
@click.pass_context
def rebuild(ctx: click.Context, names: tuple[str, ...]) -> None:
    """Drop read models (all, or each NAME) and replay them from the first event."""
    _check_names(names)
    console = _console()
    with _projector(ctx) as projector:
        head = int(projector.app.recorder.max_notification_id() or 0)
        columns = (
            TextColumn("[bold]rebuild[/] {task.description}"),
            BarColumn(),
            TaskProgressColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
        )
        with Progress(*columns, console=console, transient=False) as bar:
            task = bar.add_task(", ".join(names or NAMES), total=head)
            done = projector.rebuild(names, progress=lambda n: bar.advance(task, n))
            bar.update(task, completed=head)
    console.print(f"rebuilt {', '.join(names or NAMES)} from {done} events")


@projections.command()
@uses_store()
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@click.pass_context
def status(ctx: click.Context, as_json: bool) -> None:
    """Each read model's position in the log and how far behind it is."""
    with _projector(ctx) as projector:
        positions, head = projector.status()
    rows = [
        {"name": n, "position": positions[n], "behind": max(head - positions[n], 0)} for n in NAMES
    ]
    if as_json:
        click.echo(json.dumps({"head": head, "read_models": rows}, indent=2))
        return
    table = Table(title=f"read models (log head: {head})")
    table.add_column("read model")
    table.add_column("position", justify="right")
    table.add_column("behind", justify="right")
    for r in rows:
        table.add_row(str(r["name"]), str(r["position"]), str(r["behind"]))
    _console().print(table)
