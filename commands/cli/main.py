"""The `escrow` command line: the same embedding API, for people and scripts.

The store comes from `--store URL` (before or after the subcommand) or ESCROW_STORE, default
`sqlite:///escrow.db` in the current folder. Sub-commands live in their own modules (scenarios, views and projections,
audit); this module holds the group and the commands that need nothing else.
"""

from __future__ import annotations

from typing import Any

import click

from escrow.commands.cli.store import DEFAULT_STORE, STORE_HELP
from escrow.commands.logs import configure
from escrow.errors import EscrowError
from escrow.machines import APPEAL, COMPLAINT, ORDER
from escrow.store import mask


class Guarded(click.Group):
    """Every command answers in one line, never a traceback. Commands turn the faults they
    expect into their own messages and exit statuses; this is the last resort for what they
    let through: an engine error keeps its own message, anything else is named and exits 1."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (click.ClickException, click.exceptions.Exit, click.Abort):
            raise
        except EscrowError as e:
            raise click.ClickException(mask(str(e))) from e
        except Exception as e:
            lines = str(e).strip().splitlines()
            said = f": {mask(lines[0])}" if lines else ""
            raise click.ClickException(f"unexpected {type(e).__name__}{said}") from e


@click.group(cls=Guarded, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="escrow", prog_name="escrow")
@click.option(
    "--store",
    envvar="ESCROW_STORE",
    default=DEFAULT_STORE,
    show_default=True,
    help=STORE_HELP,
)
def main(store: str) -> None:
    """Event-sourced escrow engine for P2P orders and their appeals.

    Logs go to stderr: ESCROW_LOG_FORMAT=text|json, ESCROW_LOG_LEVEL (default WARNING; INFO
    for serve, projections run and relay). All settings: docs/configuration.md."""
    # `store` is read by the subcommands through escrow.commands.cli.store.store_of.
    try:
        configure(default_level="WARNING")  # the long-running commands raise it to INFO
    except EscrowError as e:
        raise click.UsageError(e.message) from e


@main.command()
@click.argument(
    "machine", type=click.Choice(["order", "appeal", "complaint", "all"]), default="all"
)
def diagram(machine: str) -> None:
    """Print the order, appeal and complaint state machines as Mermaid, generated from the
    rulebooks."""
    books = {"order": ORDER, "appeal": APPEAL, "complaint": COMPLAINT}
    chosen = books.values() if machine == "all" else [books[machine]]
    click.echo("\n\n".join(book.mermaid() for book in chosen))


from escrow.commands.cli.scenario import demo, scenario, simulate  # noqa: E402

main.add_command(scenario)
main.add_command(demo)
main.add_command(simulate)

from escrow.commands.cli.audit import audit  # noqa: E402

main.add_command(audit)

from escrow.commands.cli.views import projections, views  # noqa: E402

main.add_command(views)
main.add_command(projections)

from escrow.commands.cli.serve import serve  # noqa: E402

main.add_command(serve)

from escrow.commands.cli.relay import relay  # noqa: E402

main.add_command(relay)

from escrow.commands.cli.tick import tick  # noqa: E402

main.add_command(tick)
