"""What an actor may do now: decided by the handlers themselves, on throwaway copies.

`Escrow.allowed` once asked the rulebooks alone, and so disagreed with `execute` wherever a
command's acceptance depends on more than the state (its reason: A3 refused a second appeal on
a resolved issue that `allowed` still listed; its amount; a complaint window; who may file).
Now every command of the target's kind is tried with representative fields through the very
handler `execute` runs, on copies of the aggregates as stored, and nothing is ever saved: what
`allowed` lists is by construction what `execute` would accept at that moment.

Representatives: every reason of `open_appeal`, every outcome of `resolve_appeal` (none,
release, cancel), both decisions of `decide_complaint` (without compensation, which E4 always
allows), a fresh id for the appeal or complaint a command creates, and for an amount the
smallest one a command may carry (1E-18): every amount rule (R3, K1, K2, E4) is an upper
bound, so if any amount is accepted the smallest is. Free text never changes acceptance.
"""

from __future__ import annotations

import copy
import uuid
from collections.abc import Iterator
from datetime import datetime
from decimal import Decimal
from typing import Any
from uuid import UUID

from eventsourcing.application import AggregateNotFoundError, Application

from escrow.application import project
from escrow.commands.execution import CommandRunner
from escrow.commands.handlers import HANDLERS
from escrow.commands.models import (
    COMMANDS,
    AppealCommand,
    Command,
    ComplaintCommand,
    FileComplaint,
    OrderCommand,
    ReasonCode,
)
from escrow.commands.recent import RecentStreams
from escrow.errors import EscrowError, NotFound
from escrow.recording import EscrowAggregate, stream_id

TINY = Decimal("1E-18")  # the smallest amount a command accepts (18 decimal places)
TEXT = "-"
REASONS: tuple[str, ...] = ReasonCode.__args__  # type: ignore[attr-defined]

# The field values tried for each command, beyond its target and actor (one dict per try).
VARIANTS: dict[str, list[dict[str, Any]]] = {
    "open_appeal": [{"reason": r} for r in REASONS],
    "add_evidence": [{"description": TEXT}],
    "request_refund": [{"amount": TINY}],
    "report_refund": [{"amount": TINY}],
    "confirm_top_up": [{}, {"amount": TINY}],
    "resolve_appeal": [{}, {"outcome": "release"}, {"outcome": "cancel"}],
    "confirm_reversal": [{"amount": TINY}],
    "record_recovery": [{"amount": TINY}],
    "file_complaint": [{"statement": TEXT}],
    "decide_complaint": [{"decision": "upheld"}, {"decision": "overturned"}],
    "add_complaint_evidence": [{"description": TEXT}],
}


def _of_kind(kind: type[Command], *more: type[Command]) -> tuple[str, ...]:
    return tuple(
        n for n, m in COMMANDS.items() if issubclass(m, kind) and n != FileComplaint.name
    ) + tuple(m.name for m in more)


# The commands asked about, per target, in the order of the command table.
ON_ORDER = _of_kind(OrderCommand)
ON_APPEAL = _of_kind(AppealCommand, FileComplaint)
ON_COMPLAINT = _of_kind(ComplaintCommand)


class Copies(RecentStreams):
    """Lends the unit a fresh copy of each aggregate as stored, read once per question: a
    try changes its copy (events are applied as they are recorded), never the next try's."""

    def __init__(self, app: Application[UUID]) -> None:
        super().__init__(0)
        self.app = app
        self._stored: dict[UUID, EscrowAggregate | None] = {}

    def holds(self, key: UUID) -> bool:
        return True

    def take(self, key: UUID) -> EscrowAggregate | None:
        if key not in self._stored:
            try:
                self._stored[key] = self.app.repository.get(key, projector_func=project)
            except AggregateNotFoundError:
                self._stored[key] = None
        found = self._stored[key]
        return None if found is None else copy.deepcopy(found)

    def keep(self, aggregate: EscrowAggregate) -> None:
        """Nothing tried here is ever kept: it was never saved."""


def _tries(name: str, target: dict[str, str], actor: str) -> Iterator[Command]:
    """The representative commands of `name` on `target` from `actor`."""
    model = COMMANDS[name]
    fresh = {}
    if name == "open_appeal":
        fresh["appeal"] = f"allowed-{uuid.uuid4().hex}"
    elif name == "file_complaint":
        fresh["complaint"] = f"allowed-{uuid.uuid4().hex}"
    for variant in VARIANTS.get(name, [{}]):
        yield model.model_validate({**target, **fresh, **variant, "by": actor})


def accepted(
    runner: CommandRunner, now: datetime, actor: str, names: tuple[str, ...], target: dict[str, str]
) -> dict[str, list[Command]]:
    """For each of `names`, the representative commands `execute` would accept now (none
    accepted: left out). `target` is the one id field of the order, appeal or complaint
    asked about (NotFound if it does not exist). Nothing is saved; the engine's kept streams
    are not touched."""
    copies = Copies(runner.wiring.app)
    [(kind, ref)] = target.items()
    if copies.take(stream_id(kind, ref)) is None:
        raise NotFound(f"no {kind} {ref!r}")
    found: dict[str, list[Command]] = {}
    for name in names:
        for command in _tries(name, target, actor):
            unit = runner.unit(now, recent=copies)
            try:
                HANDLERS[type(command)](unit, command)
            except EscrowError:
                continue
            found.setdefault(name, []).append(command)
    return found
