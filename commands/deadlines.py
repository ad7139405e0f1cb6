"""Deadlines fired by `tick`: each due one once, as a recorded system command."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime
from uuid import UUID

from eventsourcing.application import AggregateNotFoundError

from escrow.appeal import Appeal
from escrow.application import EscrowApplication, project
from escrow.commands.execution import CommandRunner
from escrow.commands.system import (
    CloseFreezeWindow,
    ExpirePaymentProof,
    ExpirePaymentWindow,
    ExpireSanctions,
    MarkComplaintOverdue,
    SystemCommand,
)
from escrow.complaint import Complaint
from escrow.errors import EscrowError
from escrow.order import Order
from escrow.projections.deadlines import (
    COMPLAINT_RESPONSE,
    FREEZE_WINDOW,
    PAYMENT_PROOF,
    PAYMENT_WINDOW,
    SANCTION_EXPIRY,
    due,
)
from escrow.recording import EscrowAggregate
from escrow.trader import Trader
from escrow.views import Outcome

log = logging.getLogger("escrow.deadlines")

# What each kind of deadline fires, and on which kind of stream.
DEADLINE_COMMANDS: dict[str, Callable[[str], SystemCommand]] = {
    PAYMENT_WINDOW: lambda ref: ExpirePaymentWindow(order=ref),
    PAYMENT_PROOF: lambda ref: ExpirePaymentProof(appeal=ref),
    FREEZE_WINDOW: lambda ref: CloseFreezeWindow(appeal=ref),
    SANCTION_EXPIRY: lambda ref: ExpireSanctions(trader=ref),
    COMPLAINT_RESPONSE: lambda ref: MarkComplaintOverdue(complaint=ref),
}
DEADLINE_STREAMS: dict[str, type[EscrowAggregate]] = {
    PAYMENT_WINDOW: Order,
    PAYMENT_PROOF: Appeal,
    FREEZE_WINDOW: Appeal,
    SANCTION_EXPIRY: Trader,
    COMPLAINT_RESPONSE: Complaint,
}


def fire_due(runner: CommandRunner, now: datetime) -> list[Outcome]:
    """Every deadline due at `now`, fired once; one that no longer applies records nothing."""
    wiring = runner.wiring
    wiring.projector.catch_up()
    fired: list[Outcome] = []
    for kind, stream, ref in due(wiring.read, now):
        ref = ref or _ref_of(wiring.app, DEADLINE_STREAMS[kind], stream)
        if ref is None:
            continue
        command = DEADLINE_COMMANDS[kind](ref)
        try:
            outcome = runner.run(command, now)
        except EscrowError:
            continue  # moved on since (paid, proven, lifted): the deadline no longer applies
        fired.append(outcome)
        if runner.metrics is not None:
            runner.metrics.fired(kind)
        log.info(
            "fired %s on %s (%s)",
            kind,
            ref,
            command.name,
            extra={"deadline": kind, "ref": ref, "command": command.name, "at": now.isoformat()},
        )
    return fired


def _ref_of(app: EscrowApplication, cls: type[EscrowAggregate], stream: UUID) -> str | None:
    """The caller's id of a stream the read models do not name (never expected once they are
    caught up; the stream itself is the authority)."""
    try:
        found = app.repository.get(stream, projector_func=project)
    except AggregateNotFoundError:
        return None
    assert isinstance(found, cls)
    return found.ref
