"""`escrow tick`: the scheduler that fires due deadlines (O3, C1, C4, E5, S2, S3).

An embedding backend may call `Escrow.tick()` from its own scheduler; this is the process to
run beside `escrow serve` (which fires none) when it does not. Each due deadline fires once
as a recorded system command, so two schedulers racing, or one restarted, fire nothing twice.
"""

from __future__ import annotations

import logging
import signal
import threading
from types import FrameType

import click

from escrow.commands.api import Escrow
from escrow.commands.cli.store import store_of, uses_store
from escrow.errors import EscrowError, StoreError

log = logging.getLogger("escrow.deadlines")


@click.command()
@uses_store()
@click.option(
    "--every",
    type=click.FloatRange(min=0.1, max=3600),
    default=5.0,
    show_default=True,
    help="Seconds between two looks for due deadlines.",
)
@click.option("--once", is_flag=True, help="Fire what is due now, then stop.")
@click.pass_context
def tick(ctx: click.Context, every: float, once: bool) -> None:
    """Fire every due deadline once, as recorded system commands; again every --every
    seconds until Ctrl-C or SIGTERM (a store that goes away is waited for)."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    try:
        engine = Escrow(store_of(ctx))
    except EscrowError as e:
        raise click.ClickException(str(e)) from e
    stopping = threading.Event()

    def stop(_signum: int, _frame: FrameType | None) -> None:
        stopping.set()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    fired = 0
    try:
        while True:
            try:
                done = engine.tick()
            except StoreError as fault:  # a restart: the next look fires what is due
                log.warning("store unavailable (%s); looking again in %.1f s", fault, every)
                done = []
            fired += len(done)
            for outcome in done:
                log.info("deadline fired: %s %s", outcome.command, outcome.recorded[0].ref)
            if once or stopping.wait(every):
                break
    finally:
        engine.close()
    click.echo(f"{fired} deadline(s) fired")
