"""Who issues a command, as the engine knows them.

A name is a trader unless the exchange's directory of customer-service agents lists it; the
system actor (timers) is reserved and cannot be claimed by a caller.
"""

from __future__ import annotations

from dataclasses import dataclass

from escrow.vocabulary import SYSTEM


@dataclass(frozen=True)
class Actor:
    name: str
    is_agent: bool = False
    is_supervisor: bool = False  # an agent who also handles complaints (E3)

    @property
    def is_system(self) -> bool:
        return self.name == SYSTEM


SYSTEM_ACTOR = Actor(SYSTEM)
