"""`escrow scenario run|coverage`, `escrow demo` and `escrow simulate`.

Exit status of `scenario run` and `demo` (scenarios.md): 0 every scenario passed; 1 an
expectation failed; 2 a file is not a valid scenario (wins over 1); 3 the store given with
`--store` could not be prepared (nothing about the scenarios is known then).
"""

from __future__ import annotations

import json
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
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

from escrow.commands.cli.store import store_given, store_of, uses_store
from escrow.commands.scenarios.format import (
    RULE_IDS,
    Problem,
    Scenario,
    ScenarioFileError,
    load,
    scenario_files,
)
from escrow.commands.scenarios.runner import ScenarioResult, StoreUnavailable, run_scenario
from escrow.errors import EscrowError
from escrow.store import mask, parse_store_url

PASSED, FAILED, INVALID, UNAVAILABLE = 0, 1, 2, 3
PROGRESS_FROM = 5  # more files than this get a progress bar


def _console() -> Console:
    return Console(highlight=False, soft_wrap=True)


def _scenario_store(ctx: click.Context) -> str | None:
    """The store kind scenarios run on: `--store` when given on the command line (the default,
    escrow.db, is for the commands that keep data, not for scenarios), else memory (None)."""
    store = store_of(ctx) if store_given(ctx) else None
    if store is None or store == "memory:":
        return None
    try:
        parse_store_url(store)
    except EscrowError as e:
        raise click.BadParameter(e.message, param_hint="--store") from None
    return store


# --- running many files ---------------------------------------------------------------------


class Run:
    """The outcome of running a set of scenario files, for any of the outputs."""

    def __init__(self) -> None:
        self.results: list[ScenarioResult] = []
        self.invalid: list[ScenarioFileError] = []
        self.unavailable: str | None = None

    @property
    def status(self) -> int:
        if self.unavailable is not None:
            return UNAVAILABLE
        if self.invalid:
            return INVALID
        if any(not r.passed for r in self.results):
            return FAILED
        return PASSED


@contextmanager
def _progress(console: Console, total: int, show: bool) -> Iterator[Any]:
    if not show:
        yield None
        return
    columns = (
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=console, transient=True) as progress:
        yield progress


def run_files(
    paths: list[Path],
    store: str | None,
    console: Console,
    *,
    json_output: bool = False,
    verbose: bool = False,
    quiet: bool = False,
) -> Run:
    """Load and run every scenario file found, printing each result as it comes."""
    files = scenario_files(paths)
    run = Run()
    if not files:
        where = ", ".join(str(p) for p in paths)
        error = ScenarioFileError(where, [Problem(where, "no scenario files (*.yaml) found")])
        run.invalid.append(error)
        _report_invalid(error, console, json_output)
        return run
    show_bar = not json_output and len(files) > PROGRESS_FROM
    with _progress(console, len(files), show_bar) as progress:
        task = progress.add_task("scenarios", total=len(files)) if progress else None
        out = progress.console if progress else console
        for path in files:
            try:
                scenario = load(path)
            except ScenarioFileError as e:
                run.invalid.append(e)
                _report_invalid(e, out, json_output)
            else:
                try:
                    result = run_scenario(scenario, store)
                except StoreUnavailable as e:
                    run.unavailable = str(e)
                    if json_output:
                        click.echo(json.dumps({"status": "store_unavailable", "error": str(e)}))
                    else:
                        out.print(f"[red]cannot run: {escape(str(e))}[/red]")
                    break
                run.results.append(result)
                if json_output:
                    click.echo(json.dumps(result.as_dict(trace=verbose)))
                elif not quiet or not result.passed:
                    _report(result, scenario, out, verbose)
            if progress is not None:
                progress.advance(task)
    return run


def _report_invalid(error: ScenarioFileError, console: Console, json_output: bool) -> None:
    if json_output:
        click.echo(
            json.dumps(
                {
                    "file": error.file,
                    "status": "invalid",
                    "problems": [p.as_dict() for p in error.problems],
                }
            )
        )
        return
    console.print(f"[bold red]INVALID[/bold red] {escape(error.file)}")
    for problem in error.problems:
        console.print(f"    {escape(problem.where())}: {escape(problem.message)}")


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.0f} ms" if seconds < 10 else f"{seconds:.1f} s"


def _report(result: ScenarioResult, scenario: Scenario, console: Console, verbose: bool) -> None:
    mark = "[bold green]PASS[/bold green]" if result.passed else "[bold red]FAIL[/bold red]"
    console.print(
        f"{mark}    {escape(result.file)}  {escape(result.name)}  "
        f"[dim]({_ms(result.seconds)})[/dim]"
    )
    if verbose:
        for t in result.trace:
            first, *rest = t.text.splitlines() or [""]
            console.print(f"    [cyan]step {t.step}[/cyan] {escape(first)}")
            for line in rest:
                console.print(f"           {escape(line)}")
            console.print(f"        [dim]→ {escape(t.result)}[/dim]")
            for e in t.events:
                rule = f" [{e.rule}]" if e.rule else ""
                console.print(
                    f"          [dim]{escape(e.stream)} {escape(e.ref)} v{e.version} "
                    f"{escape(e.event)}{escape(rule)} by {escape(e.actor)}[/dim]"
                )
    failure = result.failure
    if failure is not None:
        where = f"{result.file}:{failure.line}" if failure.line else result.file
        console.print(f"    [red]{escape(where)}, step {failure.step}:[/red]")
        for line in failure.text.splitlines():
            console.print(f"        {escape(line)}")
        console.print(f"    expected: {escape(failure.expected)}")
        console.print(f"    found:    {escape(failure.found)}")


def _totals(run: Run, seconds: float) -> str:
    passed = sum(r.passed for r in run.results)
    failed = len(run.results) - passed
    parts = [f"{passed} passed"]
    if failed:
        parts.append(f"{failed} failed")
    if run.invalid:
        parts.append(f"{len(run.invalid)} invalid")
    total = len(run.results) + len(run.invalid)
    return f"{total} scenario file(s): {', '.join(parts)} in {seconds:.2f} s"


# --- commands -------------------------------------------------------------------------------


@click.group()
def scenario() -> None:
    """Run scripted scenarios (YAML) and check the rules they cover."""


@scenario.command("run")
@click.argument("paths", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
@uses_store(
    "Run on this kind of store: each scenario in a fresh SQLite file next to the given "
    "one, or a fresh PostgreSQL schema, removed afterwards. Default: in memory."
)
@click.option("--json", "json_output", is_flag=True, help="One JSON result per scenario.")
@click.option("-v", "--verbose", is_flag=True, help="Print every step and the events it recorded.")
@click.pass_context
def run_command(
    ctx: click.Context, paths: tuple[Path, ...], json_output: bool, verbose: bool
) -> None:
    """Run every scenario in FILE_OR_FOLDER... (every *.yaml found), each on a fresh store.

    Exit status: 0 all passed, 1 an expectation failed, 2 a file is not a valid scenario
    (wins over 1), 3 the store could not be prepared.
    """
    console = _console()
    started = time.perf_counter()
    run = run_files(
        list(paths), _scenario_store(ctx), console, json_output=json_output, verbose=verbose
    )
    if not json_output:
        console.print(_totals(run, time.perf_counter() - started))
    ctx.exit(run.status)


@scenario.command("coverage")
@click.argument("folders", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
@click.pass_context
def coverage_command(ctx: click.Context, folders: tuple[Path, ...]) -> None:
    """List the rule IDs of rules.md that no scenario covers (via its `rules:` field).

    Exit status: 0 every rule covered, 1 some rule uncovered, 2 a file is not a valid scenario.
    """
    console = _console()
    covered: Counter[str] = Counter()
    invalid = False
    files = scenario_files(list(folders))
    for path in files:
        try:
            scenario_ = load(path)
        except ScenarioFileError as e:
            invalid = True
            _report_invalid(e, console, False)
            continue
        covered.update(set(scenario_.rules))
    missing = [rule for rule in RULE_IDS if rule not in covered]
    table = Table(title=f"Rule coverage of {len(files)} scenario file(s)")
    table.add_column("rule")
    table.add_column("scenarios", justify="right")
    for rule in RULE_IDS:
        count = covered[rule]
        table.add_row(rule, str(count) if count else "[bold red]none[/bold red]")
    console.print(table)
    if invalid:
        ctx.exit(INVALID)
    if missing:
        console.print(f"[bold red]uncovered rule IDs:[/bold red] {', '.join(missing)}")
        ctx.exit(FAILED)
    console.print(f"every one of the {len(RULE_IDS)} rule IDs is covered")


def library_folder() -> Path:
    """The shipped scenario library: package data of escrow.commands.scenarios (in the
    repository, its `library` links to the top-level scenarios/ folder), so `escrow demo`
    runs from a wheel in any folder."""
    return Path(__file__).parent.parent / "scenarios" / "library"


@click.command()
@click.option(
    "--folder",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    default=None,
    help="Scenario folder (default: the shipped library).",
)
@click.pass_context
def demo(ctx: click.Context, folder: Path | None) -> None:
    """Run the shipped scenario library on the embedded SQLite store and print a summary.

    Every scenario runs on a fresh SQLite file in a temporary folder, deleted afterwards.
    """
    console = _console()
    folder = folder or library_folder()
    if not folder.is_dir():
        raise click.ClickException(f"no scenario library at {folder}: pass --folder")
    console.print(f"Running the scenario library in {escape(str(folder))} on SQLite ...")
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="escrow-demo-") as tmp:
        store = f"sqlite:///{Path(tmp) / 'demo.db'}"
        run = run_files([folder], store, console, quiet=True)
    seconds = time.perf_counter() - started
    wide = console.width >= 140  # the one-line description only where it fits
    table = Table(title="Scenario library on SQLite")
    table.add_column("scenario", no_wrap=True)
    if wide:
        table.add_column("what it shows")
    table.add_column("rules")
    table.add_column("steps", justify="right")
    table.add_column("result", no_wrap=True)
    table.add_column("time", justify="right", no_wrap=True)
    for r in run.results:
        mark = "[green]pass[/green]"
        if r.failure is not None:
            mark = f"[red]FAIL at step {r.failure.step}[/red]"
        about = [escape(r.name)] if wide else []
        row = [escape(Path(r.file).stem), *about, " ".join(r.rules), str(r.steps)]
        table.add_row(*row, mark, _ms(r.seconds))
    for e in run.invalid:
        blank = ["", "", ""] if wide else ["", ""]
        table.add_row(escape(Path(e.file).stem), *blank, "[red]invalid[/red]", "")
    console.print(table)
    covered = {rule for r in run.results for rule in r.rules}
    console.print(
        f"{_totals(run, seconds)}; rule IDs covered: {len(covered & set(RULE_IDS))}/{len(RULE_IDS)}"
    )
    ctx.exit(run.status)


@click.command()
@click.option("--orders", type=click.IntRange(min=1), required=True, help="Orders to simulate.")
@click.option("--seed", type=int, default=1, show_default=True, help="Same seed, same history.")
@click.option(
    "--settle",
    is_flag=True,
    help="Let every story end (weeks of simulated time) instead of stopping when the last "
    "order arrives with the rest in flight.",
)
@uses_store("Store to fill (same as the global --store).")
@click.option("--json", "json_output", is_flag=True, help="Print the summary as JSON.")
@click.pass_context
def simulate(ctx: click.Context, orders: int, seed: int, settle: bool, json_output: bool) -> None:
    """Fill a store with a seeded, realistic workload and summarise it.

    Orders complete, expire, are cancelled, or are appealed for every reason, with deadlines
    firing and sanctions applied and lifted, on a simulated clock. It stops when the last
    order arrives: what is going on then (unpaid and paid orders, open appeals, sanctions)
    stays in flight, as in a live exchange (--settle: every story ends). Run on a fresh store: the
    same seed then gives the same history and the same summary. `views` read the store at the
    time of its last event, so they show it as of the simulated time.
    """
    from escrow.commands.simulation.simulate import SimulationError, simulation_engine
    from escrow.commands.simulation.simulate import simulate as run_simulation

    url = store_of(ctx)
    try:
        parse_store_url(url)
    except EscrowError as e:
        raise click.BadParameter(e.message, param_hint="--store") from None
    console = Console(stderr=json_output, highlight=False)
    try:
        engine = simulation_engine(url)
    except EscrowError as e:
        raise click.ClickException(str(e)) from None
    try:
        columns = (
            TextColumn("simulating"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("orders, {task.fields[events]} events"),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
        )
        with Progress(*columns, console=console, transient=True) as bar:
            task = bar.add_task("orders", total=orders, events=0)

            def progress(done: int, events: int) -> None:
                bar.update(task, completed=done, events=events)

            try:
                summary = run_simulation(engine, orders, seed, progress, settle)
            except (SimulationError, EscrowError) as e:
                raise click.ClickException(str(e)) from None
    finally:
        engine.close()
    if json_output:
        click.echo(json.dumps(summary.as_dict(), indent=2))
        return
    _print_summary(console, summary, url)


def _counter_table(title: str, counts: Counter[str]) -> Table:
    table = Table(title=title)
    table.add_column(title.split()[0])
    table.add_column("count", justify="right")
    for key, n in sorted(counts.items()):
        table.add_row(escape(key), str(n))
    return table


def _print_summary(console: Console, summary: Any, url: str) -> None:
    console.print(_counter_table("Orders by final state", summary.final_states))
    appeals = Table(title="Appeals by reason and ending")
    endings = sorted({ending for _, ending in summary.appeals})
    appeals.add_column("reason")
    for ending in endings:
        appeals.add_column(ending, justify="right")
    for reason in sorted({reason for reason, _ in summary.appeals}):
        appeals.add_row(reason, *(str(summary.appeals.get((reason, e), "")) or "" for e in endings))
    console.print(appeals)
    console.print(_counter_table("Sanctions applied", summary.sanctions_applied))
    console.print(_counter_table("Sanctions lifted", summary.sanctions_lifted))
    console.print(_counter_table("Deadlines fired", summary.deadlines_fired))
    console.print(_counter_table("Refusals (as the rules require)", summary.refusals))
    console.print(
        f"{summary.orders} orders ({summary.in_flight} in flight), {summary.commands} commands, {summary.events} events "
        f"recorded in {summary.seconds:.1f} s ({summary.rate:,.0f} events/s) on {escape(mask(url))}; "
        f"simulated time until {summary.simulated_until:%Y-%m-%d %H:%M} UTC"
    )
