"""`escrow audit`: read a store's history for compliance. Every sub-command only reads: the
store is opened read-only and no command is ever executed.

Exit codes: 0 done (for `verify`: no violation), 1 `verify` found violations, 2 the audit could
not run (no such store, order or version, a malformed time or seal).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from escrow.commands.audit.export import export_records, write_export
from escrow.commands.audit.history import (
    Entry,
    History,
    Snapshot,
    diff,
    event_name,
    load_seal,
    parse_moment,
    seal,
    snapshot,
    stamp,
    timeline,
    to_json,
)
from escrow.commands.audit.report import Report
from escrow.commands.audit.verify import default_jobs, verify_store
from escrow.commands.cli.store import store_of, uses_store
from escrow.errors import EscrowError
from escrow.faults import store_faults
from escrow.recording import stream_id

KIND = click.Choice(["order", "appeal", "trader", "complaint"])


class AuditError(click.ClickException):
    exit_code = 2


@contextmanager
def _history(ctx: click.Context) -> Iterator[History]:
    """The store's history, read-only; a store fault while reading is an AuditError too."""
    try:
        with History.open(store_of(ctx)) as history:
            assert history.config is not None
            with store_faults(history.config):
                yield history
    except EscrowError as e:
        raise AuditError(e.message) from None


def _moment(value: str | None) -> datetime | None:
    if value is None:
        return None
    try:
        return parse_moment(value)
    except EscrowError as e:
        raise AuditError(e.message) from None


def _point(value: str) -> dict[str, Any]:
    """`--from 3` / `--from v3` is a version; anything else is a time."""
    text = value.strip().removeprefix("v")
    if text.isdigit():
        return {"version": int(text)}
    return {"at": _moment(value)}


def _console(stderr: bool = False) -> Console:
    """Tables keep their width when piped to a file (an audit report), not 80 columns."""
    console = Console(highlight=False, stderr=stderr)
    if not console.is_terminal:
        console.width = max(console.width, 180)
    return console


def _value(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, list | dict):
        return json.dumps(value, ensure_ascii=False)
    return str(value)


@click.group()
def audit() -> None:
    """Read history: state at a time or version, diffs, timelines, verification, seals, export.

    Nothing here writes to the store or executes a command.
    """


@audit.command()
@uses_store()
@click.argument("kind", type=KIND)
@click.argument("ref")
@click.option("--at", "at", metavar="TIME", help="As it was at this time (ISO 8601 with zone).")
@click.option("--version", type=click.IntRange(min=1), help="As it was at this version.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
def show(
    ctx: click.Context, kind: str, ref: str, at: str | None, version: int | None, as_json: bool
) -> None:
    """An order, appeal or trader as it was at a time or version (default: now).

    \b
      escrow audit show order P2P-123 --at 2026-03-01T10:15:00Z
      escrow audit show appeal AP-9 --version 3 --json
    """
    with _history(ctx) as history:
        try:
            snap = snapshot(history, kind, ref, at=_moment(at), version=version)
        except EscrowError as e:
            raise AuditError(e.message) from None
    if as_json:
        click.echo(to_json(snap.as_json(), indent=2))
        return
    table = Table(title=_title(snap), title_justify="left")
    table.add_column("field")
    table.add_column("value")
    for name, value in snap.state.items():
        table.add_row(name, escape(_value(value)))
    _console().print(table)


def _title(snap: Snapshot) -> str:
    asked = f" at {stamp(snap.asked)}" if snap.asked else ""
    return (
        f"{snap.kind} {escape(snap.ref)}{asked}: version {snap.version} "
        f"(recorded {stamp(snap.recorded_at)})"
    )


@audit.command(name="diff")
@uses_store()
@click.argument("kind", type=KIND)
@click.argument("ref")
@click.option("--from", "start", required=True, metavar="TIME|VERSION", help="Earlier point.")
@click.option("--to", "end", metavar="TIME|VERSION", help="Later point (default: now).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
def diff_command(
    ctx: click.Context, kind: str, ref: str, start: str, end: str | None, as_json: bool
) -> None:
    """What changed between two points: the fields, and the events recorded in between.

    \b
      escrow audit diff order P2P-123 --from 2026-03-01T10:00:00Z --to 2026-03-01T12:00:00Z
      escrow audit diff appeal AP-9 --from 2 --to 5
    """
    with _history(ctx) as history:
        try:
            before = snapshot(history, kind, ref, **_point(start))
            after = snapshot(history, kind, ref, **(_point(end) if end else {}))
        except EscrowError as e:
            raise AuditError(e.message) from None
        events = [
            (v, t, f)
            for v, t, f in history.stream(stream_id(kind, ref))
            if before.version < v <= after.version
        ]
    changes = diff(before, after)
    if as_json:
        click.echo(
            to_json(
                {
                    "from": before.as_json(),
                    "to": after.as_json(),
                    "changes": [
                        {"field": c.field, "before": c.before, "after": c.after} for c in changes
                    ],
                    "events": [
                        {
                            "version": v,
                            "event": event_name(t),
                            "at": f["timestamp"],
                            "actor": f.get("actor"),
                            "rule": f.get("rule"),
                        }
                        for v, t, f in events
                    ],
                },
                indent=2,
            )
        )
        return
    console = _console()
    table = Table(
        title=f"{kind} {escape(ref)}: version {before.version} → {after.version}",
        title_justify="left",
    )
    table.add_column("field")
    table.add_column("before")
    table.add_column("after")
    for c in changes:
        table.add_row(c.field, escape(_value(c.before)), escape(_value(c.after)))
    console.print(table if changes else f"{kind} {escape(ref)}: no change")
    if events:
        recorded = Table(title="recorded in between", title_justify="left")
        for column in ("v", "time", "event", "actor", "rule"):
            recorded.add_column(column)
        for v, t, f in events:
            recorded.add_row(
                str(v),
                stamp(f["timestamp"]),
                event_name(t),
                escape(str(f.get("actor"))),
                f.get("rule") or "",
            )
        console.print(recorded)


@audit.command(name="timeline")
@uses_store()
@click.argument("kind", type=click.Choice(["order"]))
@click.argument("ref")
@click.option("--json", "as_json", is_flag=True, help="Print JSON (every decoded field).")
@click.pass_context
def timeline_command(ctx: click.Context, kind: str, ref: str, as_json: bool) -> None:
    """Every event of an order, its appeals and the sanctions they caused, in time order.

    \b
      escrow audit timeline order P2P-123
      escrow audit timeline order P2P-123 --json
    """
    with _history(ctx) as history:
        try:
            entries = timeline(history, ref)
        except EscrowError as e:
            raise AuditError(e.message) from None
    if as_json:
        click.echo(to_json([item.as_json() for item in entries], indent=2))
        return
    table = Table(title=f"order {escape(ref)}: timeline", title_justify="left")
    for column in ("time", "stream", "v", "event", "actor", "rule", "state", "amounts"):
        table.add_column(column, no_wrap=column in ("time", "event"))
    for item in entries:
        table.add_row(*_row(item))
    _console().print(table)


def _row(e: Entry) -> list[str]:
    return [
        stamp(e.at),
        escape(f"{e.kind} {e.ref}"),
        str(e.version),
        e.event,
        escape(e.actor or ""),
        e.rule or "",
        e.state or "",
        escape(" ".join(f"{k}={v}" for k, v in e.amounts.items())),
    ]


@audit.command(name="verify")
@uses_store()
@click.option(
    "--seal",
    "seal_file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="A seal from `escrow audit seal`: also catch history rewritten after it.",
)
@click.option(
    "--jobs",
    type=click.IntRange(min=1, max=16),
    help="Worker processes (default: 2 on large stores when the machine has 2 cores).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.option("--no-progress", is_flag=True, help="No progress bar.")
@click.pass_context
def verify_command(
    ctx: click.Context, seal_file: Path | None, jobs: int | None, as_json: bool, no_progress: bool
) -> None:
    """Check a whole store: hash chains, version sequences, and the rules' invariants.

    Escrow conserved per order and asset (and the ledger read model agreeing, when it is up to
    date), no release while an appeal was open, terminal states final, one resolved appeal per
    issue, deadlines fired once and never early, sanctions traceable to their appeals; every
    stored event matches its chain digest and follows its stream's previous version. With
    --seal, sealed heads must still be there unchanged. Exit 1 when anything is found.

    \b
      escrow audit verify
      escrow audit verify --seal seal.json --json
    """
    sealed = None
    if seal_file is not None:
        try:
            sealed = load_seal(seal_file.read_text())
        except EscrowError as e:
            raise AuditError(e.message) from None
    with _history(ctx) as history:
        total = history.count()
    console = _console(stderr=True)
    try:
        with _bar(console, total, "verifying", show=not no_progress) as advance:
            report = verify_store(
                store_of(ctx), sealed=sealed, jobs=jobs or default_jobs(total), progress=advance
            )
    except EscrowError as e:
        raise AuditError(e.message) from None
    except RuntimeError as e:  # a worker process failed: the audit did not run to its end
        raise AuditError(str(e)) from None
    if as_json:
        click.echo(to_json(report.as_json(), indent=2))
    else:
        _print_report(_console(), report)
    ctx.exit(0 if report.clean else 1)


def _print_report(console: Console, report: Report) -> None:
    for f in report.findings:
        console.print(escape(f.line()))
    if report.more_findings:
        console.print(f"... and {report.more_findings} more violations")
    table = Table(title="escrow by asset (from the events)", title_justify="left")
    for column in ("asset", "locked", "released", "returned", "in escrow"):
        table.add_column(column, justify="right" if column != "asset" else "left")
    for asset, sums in report.assets.items():
        table.add_row(
            escape(asset),
            *(str(sums[k]) for k in ("locked", "released", "returned", "in_escrow")),
        )
    if report.assets:
        console.print(table)
    checked = ["chains", "invariants"]
    if report.ledger_checked:
        checked.append("ledger")
    if report.seal_checked:
        checked.append("seal")
    count = len(report.findings) + report.more_findings
    verdict = "clean" if report.clean else f"{count} violation{'s' if count != 1 else ''}"
    console.print(
        f"verified {report.events} events in {report.streams} streams "
        f"({', '.join(checked)}): {verdict}"
    )


@contextmanager
def _bar(console: Console, total: int, label: str, show: bool) -> Iterator[Any]:
    if not show or not console.is_terminal:
        yield None
        return
    columns = (
        TextColumn(label),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("events"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=console, transient=True) as progress:
        task = progress.add_task(label, total=total)
        yield lambda n: progress.advance(task, n)


@audit.command(name="seal")
@uses_store()
@click.option(
    "--output",
    "-o",
    type=click.Path(dir_okay=False, writable=True, path_type=Path),
    help="Write the seal here instead of stdout.",
)
@click.option("--no-progress", is_flag=True, help="No progress bar.")
@click.pass_context
def seal_command(ctx: click.Context, output: Path | None, no_progress: bool) -> None:
    """Print a seal: every stream's head (id, version, chain digest) and one digest over all.

    Keep it outside the database (a ticket, a signed mail, a WORM bucket); `verify --seal`
    then catches history rewritten after it, even with its chains recomputed.

    \b
      escrow audit seal -o seal-2026-03-01.json
    """
    with _history(ctx) as history:
        console = _console(stderr=True)
        with _bar(console, history.count(), "sealing", show=not no_progress) as advance:
            sealed = seal(history, advance)
    text = json.dumps(sealed, indent=1) + "\n"
    if output is None:
        click.echo(text, nl=False)
    else:
        output.write_text(text)
        click.echo(f"sealed {len(sealed['streams'])} streams: {sealed['digest']}", err=True)


@audit.command(name="export")
@uses_store()
@click.option(
    "--format", "fmt", type=click.Choice(["jsonl", "csv"]), default="jsonl", show_default=True
)
@click.option("--since", metavar="TIME", help="Only events recorded at or after this time.")
@click.option("--until", metavar="TIME", help="Only events recorded at or before this time.")
@click.option("--order", metavar="REF", help="Only this order's timeline (appeals, sanctions).")
@click.option(
    "--output",
    "-o",
    type=click.Path(dir_okay=False, writable=True, path_type=Path),
    help="Write here instead of stdout.",
)
@click.pass_context
def export_command(
    ctx: click.Context,
    fmt: str,
    since: str | None,
    until: str | None,
    order: str | None,
    output: Path | None,
) -> None:
    """Stream events as other services receive them (docs/events.md; amounts as exact
    decimal strings).

    \b
      escrow audit export --format jsonl > events.jsonl
      escrow audit export --format csv --since 2026-03-01T00:00:00Z -o march.csv
      escrow audit export --order P2P-123
    """
    start, end = _moment(since), _moment(until)
    with _history(ctx) as history:
        records = export_records(history, since=start, until=end, order=order)
        try:
            if output is None:
                count = write_export(records, fmt, sys.stdout)
            else:
                with output.open("w", newline="", encoding="utf-8") as out:
                    count = write_export(records, fmt, out)
                click.echo(f"exported {count} events to {output}", err=True)
        except EscrowError as e:
            raise AuditError(e.message) from None
