"""The `escrow` command line: the same embedding API, for people and scripts.

The store comes from `--store URL` or ESCROW_STORE, default `sqlite:///escrow.db` in the
current folder. Sub-commands live in their own modules (scenarios, views and projections,
audit); this module holds the group and the commands that need nothing else.
"""

from __future__ import annotations

import click

from escrow.machines import APPEAL, ORDER

DEFAULT_STORE = "sqlite:///escrow.db"


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--store",
    envvar="ESCROW_STORE",
    default=DEFAULT_STORE,
    show_default=True,
    help="Store URL: memory:, sqlite:///file.db (sqlite:////abs/path.db) or postgresql://...",
)
@click.pass_context
def main(ctx: click.Context, store: str) -> None:
    """Event-sourced escrow engine for P2P orders and their appeals."""
    ctx.obj = {"store": store}


@main.command()
@click.argument("machine", type=click.Choice(["order", "appeal", "all"]), default="all")
def diagram(machine: str) -> None:
    """Print the order and appeal state machines as Mermaid, generated from the rulebooks."""
    books = {"order": ORDER, "appeal": APPEAL}
    chosen = books.values() if machine == "all" else [books[machine]]
    click.echo("\n\n".join(book.mermaid() for book in chosen))


from commands.cli_scenario import demo, scenario, simulate  # noqa: E402

main.add_command(scenario)
main.add_command(demo)
main.add_command(simulate)

from commands.cli_audit import audit  # noqa: E402

main.add_command(audit)

from commands.cli_views import projections, views  # noqa: E402

main.add_command(views)
main.add_command(projections)
