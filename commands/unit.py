"""One attempt at one command: the aggregates it loaded and changed, the time, the policy.

Everything a command changes is saved in one `app.save(...)`: atomic, with optimistic
concurrency on every aggregate touched.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import TypeVar
from uuid import UUID

from eventsourcing.application import AggregateNotFoundError, Application

from escrow.actors import SYSTEM_ACTOR, Actor
from escrow.appeal import Appeal
from escrow.application import project
from escrow.commands.recent import RecentStreams
from escrow.complaint import Complaint
from escrow.errors import NotAuthorized, NotFound
from escrow.order import Order
from escrow.policy import Policy
from escrow.recording import EscrowAggregate, stream_id
from escrow.streams import select_streams
from escrow.trader import Trader
from escrow.vocabulary import SYSTEM

A = TypeVar("A", bound=EscrowAggregate)


class Unit:
    def __init__(
        self,
        app: Application[UUID],
        recent: RecentStreams,
        now: datetime,
        policy: Policy,
        agents: frozenset[str],
        system: bool = False,
        attempt: int = 0,
        supervisors: frozenset[str] = frozenset(),
    ) -> None:
        self.app = app
        self.recent = recent
        self.now = now
        self.policy = policy
        self.agents = agents
        self.supervisors = supervisors
        self.system = system
        self.attempt = attempt
        self._loaded: dict[UUID, EscrowAggregate | None] = {}
        self._seen: dict[UUID, int] = {}  # the version each stream had when read (0: none)
        self._kept: dict[UUID, EscrowAggregate] = {}  # lent by the engine's recent streams
        self._lending = attempt == 0  # a retry reads everything fresh
        self.changed: list[EscrowAggregate] = []

    def actor(self, name: str) -> Actor:
        if name == SYSTEM:
            if not self.system:
                raise NotAuthorized("the system actor is reserved for deadlines")
            return SYSTEM_ACTOR
        supervisor = name in self.supervisors
        return Actor(name, is_agent=supervisor or name in self.agents, is_supervisor=supervisor)

    def find(self, cls: type[A], ref: str) -> A | None:
        return self.find_id(cls, stream_id(cls.KIND, ref))

    def find_id(self, cls: type[A], key: UUID) -> A | None:
        if key not in self._loaded:
            found = self.recent.take(key) if self._lending else None
            if found is not None:
                self._kept[key] = found
            else:
                try:
                    found = self.app.repository.get(key, projector_func=project)
                except AggregateNotFoundError:
                    found = None
            self._found(key, found)
        found = self._loaded[key]
        assert found is None or isinstance(found, cls)
        return found

    def find_all(self, cls: type[A], refs: Sequence[str]) -> list[A | None]:
        """`find` for several refs, the streams not kept in memory read in one query."""
        keys = [stream_id(cls.KIND, ref) for ref in refs]
        missing = [
            k
            for k in dict.fromkeys(keys)
            if k not in self._loaded and not (self._lending and self.recent.holds(k))
        ]
        if len(missing) > 1:
            stored = select_streams(self.app.recorder, missing)
            to_event = self.app.mapper.to_domain_event
            for key in missing:
                events = stored.get(key)
                self._found(key, project(None, map(to_event, events)) if events else None)
        return [self.find_id(cls, key) for key in keys]

    def _found(self, key: UUID, aggregate: EscrowAggregate | None) -> None:
        self._loaded[key] = aggregate
        self._seen[key] = 0 if aggregate is None else aggregate.version

    def moved(self, keys: Iterable[UUID] | None = None) -> bool:
        """Whether a stream read by this attempt (or one of `keys`) has moved since.

        Streams are read one by one, so a racing command may commit between two reads: a
        refusal decided on such a mix (an appeal still open, its order already closed) may be
        one that no serial order of the two commands gives, so the engine decides again
        instead of refusing. A stream kept in memory may be older still."""
        for key in self._seen if keys is None else keys:
            last = self.app.recorder.select_events(key, desc=True, limit=1)
            if (last[0].originator_version if last else 0) != self._seen[key]:
                return True
        return False

    def kept_unchanged(self) -> list[UUID]:
        """Streams kept in memory that this command only read: their save cannot tell
        whether they moved, so they are checked before it."""
        return [key for key, kept in self._kept.items() if not kept.pending_events]

    def keep(self) -> None:
        """Lend the aggregates this command saved to the next one (escrow.commands.recent). Streams
        it only read are left out: checking one fresh costs what reading it does."""
        for aggregate in self.changed:
            self.recent.keep(aggregate)

    def get(self, cls: type[A], ref: str) -> A:
        found = self.find(cls, ref)
        if found is None:
            raise NotFound(f"no {cls.KIND} {ref!r}")
        return self.touch(found)

    def order(self, ref: str) -> Order:
        return self.get(Order, ref)

    def appeal(self, ref: str) -> Appeal:
        return self.get(Appeal, ref)

    def complaint(self, ref: str) -> Complaint:
        return self.get(Complaint, ref)

    def trader(self, name: str) -> Trader:
        """The trader's stream, started now if this is their first sanction."""
        found = self.find(Trader, name)
        if found is None:
            found = Trader.register(name, self.now)
            self._loaded[found.id] = found
        return self.touch(found)

    def add(self, aggregate: A) -> A:
        self._loaded[aggregate.id] = aggregate
        return self.touch(aggregate)

    def touch(self, aggregate: A) -> A:
        if not any(a is aggregate for a in self.changed):
            self.changed.append(aggregate)
        return aggregate
