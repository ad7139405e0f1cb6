"""Idempotency: a command sent with a `command_id` leaves a receipt in the same transaction as
its events, so a second send (even from another process) returns the first outcome and records
nothing new. Refused commands leave no receipt: a refusal stores nothing.
"""

from __future__ import annotations

import hashlib
import json
from datetime import datetime
from typing import TYPE_CHECKING, Any

from escrow.recording import EscrowAggregate


def fingerprint(name: str, payload: dict[str, Any]) -> str:
    text = json.dumps([name, payload], sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


class Receipt(EscrowAggregate):
    KIND = "command"
    TOPIC = "escrow:Receipt"

    if TYPE_CHECKING:  # see escrow.order.Order for why these are not run-time annotations
        ref: str
        command: str
        fingerprint: str
        recorded: list[dict[str, Any]]

    class Event(EscrowAggregate.Event):
        TOPIC = "escrow:Receipt.Event"

    class Executed(EscrowAggregate.Created):
        TOPIC = "escrow:Receipt.Executed.v1"
        ref: str
        command: str
        fingerprint: str
        recorded: list[dict[str, Any]]

        def apply(self, aggregate: Any) -> None:
            super().apply(aggregate)
            aggregate.ref, aggregate.command = self.ref, self.command
            aggregate.fingerprint, aggregate.recorded = self.fingerprint, self.recorded

    @classmethod
    def issue(
        cls,
        ref: str,
        command: str,
        actor: str,
        print_: str,
        recorded: list[dict[str, Any]],
        at: datetime,
    ) -> Receipt:
        return cls._start(
            cls.Executed,
            actor=actor,
            rule=None,
            at=at,
            ref=ref,
            command=command,
            fingerprint=print_,
            recorded=recorded,
        )
