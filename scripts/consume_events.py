"""An example consumer of the relay's stream: a durable pull consumer with explicit acks,
idempotent on `position` (docs/events.md).

It credits wallets from `movement` and remembers, in its own SQLite file, the last position it
applied, in the same transaction as the credit. JetStream delivers at least once (a message
whose ack was lost comes again), so a message at or below the remembered position is acked
and skipped: applied exactly once all the same.

    .venv/bin/python scripts/consume_events.py --nats nats://127.0.0.1:4222 --db wallet.db
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sqlite3
from decimal import Decimal
from typing import Any

import nats
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy


class Wallets:
    """The consumer's own state: balances and the last position applied, in one database."""

    def __init__(self, path: str) -> None:
        self.db = sqlite3.connect(path, isolation_level=None)
        self.db.execute(
            "CREATE TABLE IF NOT EXISTS applied (id INTEGER PRIMARY KEY, position INTEGER)"
        )
        self.db.execute("INSERT OR IGNORE INTO applied VALUES (1, 0)")
        self.db.execute(
            "CREATE TABLE IF NOT EXISTS balances (trader TEXT, asset TEXT, amount TEXT, "
            "PRIMARY KEY (trader, asset))"
        )

    def position(self) -> int:
        return int(self.db.execute("SELECT position FROM applied").fetchone()[0])

    def apply(self, event: dict[str, Any]) -> bool:
        """Apply one event unless already applied; False when it was a repeat."""
        self.db.execute("BEGIN IMMEDIATE")
        try:
            if event["position"] <= self.position():
                self.db.execute("ROLLBACK")
                return False
            movement = event["movement"]
            if movement is not None:
                key = (movement["to"], movement["asset"])
                row = self.db.execute(
                    "SELECT amount FROM balances WHERE trader = ? AND asset = ?", key
                ).fetchone()
                total = Decimal(row[0] if row else "0") + Decimal(movement["amount"])
                self.db.execute(
                    "INSERT OR REPLACE INTO balances VALUES (?, ?, ?)", (*key, str(total))
                )
            self.db.execute("UPDATE applied SET position = ?", [event["position"]])
            self.db.execute("COMMIT")
            return True
        except BaseException:
            self.db.execute("ROLLBACK")
            raise


async def consume(args: argparse.Namespace) -> None:
    wallets = Wallets(args.db)
    nc = await nats.connect(args.nats)
    js = nc.jetstream()
    subscription = await js.pull_subscribe(
        f"{args.prefix}.order.>",  # a wallet needs the order events only
        durable=args.durable,
        stream=args.stream,
        config=ConsumerConfig(ack_policy=AckPolicy.EXPLICIT, deliver_policy=DeliverPolicy.ALL),
    )
    idle = 0
    try:
        while args.idle is None or idle < args.idle:
            try:
                messages = await subscription.fetch(100, timeout=1)
            except (nats.errors.TimeoutError, TimeoutError):  # nats-py raises either
                idle += 1
                continue
            idle = 0
            for msg in messages:
                event = json.loads(msg.data)
                if wallets.apply(event) and event["movement"] and not args.quiet:
                    m = event["movement"]
                    print(
                        f"{event['position']}: {m['escrow']} {m['amount']} {m['asset']} to {m['to']}"
                    )
                await msg.ack()  # after the commit: a crash in between only means a repeat
    finally:
        await nc.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--nats", default="nats://127.0.0.1:4222")
    parser.add_argument("--stream", default="ESCROW")
    parser.add_argument("--prefix", default="escrow")
    parser.add_argument("--durable", default="wallet", help="the durable consumer's name")
    parser.add_argument("--db", default="wallet.db", help="the consumer's own SQLite file")
    parser.add_argument("--idle", type=int, help="stop after this many empty 1 s fetches")
    parser.add_argument("--quiet", action="store_true")
    asyncio.run(consume(parser.parse_args()))


if __name__ == "__main__":
    main()
