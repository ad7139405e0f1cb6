"""`escrow relay`: the event log into NATS JetStream (docs/events.md), and its status."""

from __future__ import annotations

import asyncio
import json
import signal

import click

from escrow.commands.cli.store import store_of, uses_store
from escrow.commands.logs import configure
from escrow.commands.relay.relay import Relay, status_of
from escrow.errors import EscrowError
from escrow.store import mask

stream_option = click.option(
    "--stream",
    envvar="ESCROW_RELAY_STREAM",
    default="ESCROW",
    show_default=True,
    help="JetStream stream name.",
)


@click.group(invoke_without_command=True)
@uses_store()
@click.option(
    "--nats",
    "nats_url",
    metavar="URL",
    envvar="ESCROW_NATS",
    default="nats://127.0.0.1:4222",
    show_default=True,
    help="The NATS server (JetStream enabled).",
)
@stream_option
@click.option(
    "--prefix",
    envvar="ESCROW_RELAY_PREFIX",
    default="escrow",
    show_default=True,
    help="Subjects: PREFIX.KIND.EVENT.",
)
@click.option(
    "--batch",
    type=click.IntRange(1, 10_000),
    default=1000,
    show_default=True,
    help="Log rows per batch (published without waiting, then acknowledged together).",
)
@click.option(
    "--poll",
    type=click.FloatRange(0.01),
    default=1.0,
    show_default=True,
    help="Seconds between polls (PostgreSQL also wakes on each commit).",
)
@click.pass_context
def relay(
    ctx: click.Context, nats_url: str, stream: str, prefix: str, batch: int, poll: float
) -> None:
    """Publish every event of the store to NATS JetStream, once and in log order; resumes
    where it stopped after a crash, a broker restart or a store restart (Ctrl-C or SIGTERM
    stops after the batch in hand).

    \b
      escrow --store postgresql://... relay --nats nats://127.0.0.1:4222
      escrow relay status
    """
    if ctx.invoked_subcommand is not None:
        return
    configure()  # a service: INFO unless ESCROW_LOG_LEVEL says otherwise (checked by `escrow`)
    try:
        relayer = Relay(
            store_of(ctx), nats_url, stream=stream, prefix=prefix, batch=batch, poll=poll
        )
    except EscrowError as e:
        raise click.ClickException(str(e)) from e

    async def main() -> None:
        loop = asyncio.get_running_loop()
        for s in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(s, relayer.stop)
        await relayer.run()

    try:
        asyncio.run(main())
    finally:
        relayer.close()


@relay.command()
@uses_store()
@stream_option
@click.option("--json", "as_json", is_flag=True, help="One JSON object.")
@click.pass_context
def status(ctx: click.Context, stream: str, as_json: bool) -> None:
    """The relay's position (the last event acknowledged by the server), the log's head and
    the lag between them."""
    try:
        found = status_of(store_of(ctx), stream)
    except EscrowError as e:
        raise click.ClickException(str(e)) from e
    if as_json:
        click.echo(json.dumps({"position": found.position, "head": found.head, "lag": found.lag}))
    else:
        click.echo(f"store     {mask(store_of(ctx))}\nstream    {stream}")
        click.echo(f"position  {found.position}\nhead      {found.head}\nlag       {found.lag}")
