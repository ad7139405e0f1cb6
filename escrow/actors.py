"""Who issues a command, as the engine knows them.

A name is a trader unless the store records it as appointed to customer service (an agent, or
a supervisor: an agent who also handles complaints); the system actor (timers) is reserved and
cannot be claimed by a caller. Whether a name is staff is read from its Trader stream only
when a decision needs it (`staff`), so a party acting on its own order pays no extra read.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property

from escrow.vocabulary import SYSTEM, Role


@dataclass(frozen=True)
class Actor:
    name: str
    role: str | None = None  # Role.AGENT or Role.SUPERVISOR when known up front
    lookup: Callable[[], str | None] | None = field(default=None, compare=False, repr=False)

    @cached_property
    def staff(self) -> str | None:
        """Role.AGENT, Role.SUPERVISOR or None (a trader), as the store says (once asked)."""
        return self.lookup() if self.lookup is not None else self.role

    @property
    def is_agent(self) -> bool:
        return self.staff is not None

    @property
    def is_supervisor(self) -> bool:  # an agent who also handles complaints (E3)
        return self.staff == Role.SUPERVISOR

    @property
    def is_system(self) -> bool:
        return self.name == SYSTEM


SYSTEM_ACTOR = Actor(SYSTEM)
