"""Bring the store's customer service in line with a list of names, through the commands.

Scenario files (`agents:`, `supervisors:`), the keys file of `escrow serve`, the simulator
and the tests all name their staff; each such list becomes `appoint_agent` commands, recorded
and audited like any other, so every process on the store sees the same agents. Idempotent:
a person already in the wanted role is left alone, and each appointment carries a
`command_id` derived from the person, the role and their stream's version, so two processes
starting together with the same list record it once (the second gets the first's outcome).
Nobody is dismissed here: another process may name other staff; `dismiss_agent` is explicit.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

from eventsourcing.application import AggregateNotFoundError

from escrow.application import project
from escrow.commands.api import Escrow
from escrow.commands.models import AppointAgent
from escrow.recording import stream_id
from escrow.trader import Trader
from escrow.views import Outcome
from escrow.vocabulary import Role


def appoint(
    engine: Escrow, agents: Iterable[str] = (), supervisors: Iterable[str] = ()
) -> list[Outcome]:
    """Appoint each of `agents` as an agent and each of `supervisors` as a supervisor (a name
    in both is a supervisor); returns what was recorded or replayed."""
    wanted = {name: Role.AGENT.value for name in agents}
    wanted.update(dict.fromkeys(supervisors, Role.SUPERVISOR.value))
    done = []
    for name, role in sorted(wanted.items()):
        try:
            person = engine.app.repository.get(stream_id(Trader.KIND, name), projector_func=project)
        except AggregateNotFoundError:
            person = None  # the appointment starts the stream
        if person is not None and person.role == role:
            continue
        version = 0 if person is None else person.version
        key = hashlib.sha256(f"{name}\x00{role}\x00{version}".encode()).hexdigest()[:40]
        command = AppointAgent(
            agent=name, supervisor=role == Role.SUPERVISOR, command_id=f"appoint-{key}"
        )
        done.append(engine.execute(command))
    return done
