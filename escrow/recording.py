"""How every aggregate records its events: stable topics, the actor, the deciding rule, the
injected time, and a hash chained to the stream's previous event.

The chain digest is computed from the event's own fields when it is recorded, so it is stored
as part of the event and verifying a store needs nothing but the store (issue: audit).
"""

from __future__ import annotations

import functools
import hashlib
import json
import uuid
from collections.abc import Mapping
from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any, ClassVar, Self

from eventsourcing.domain import Aggregate
from eventsourcing.utils import get_topic

# uuid5 namespace of escrow streams: the same caller id always maps to the same stream.
NAMESPACE = uuid.UUID("6f6b0a52-3c1e-5d0c-9d59-2f7e0c6d1a01")


@functools.lru_cache(maxsize=65536)
def stream_id(kind: str, ref: str) -> uuid.UUID:
    return uuid.uuid5(NAMESPACE, f"{kind}:{ref}")


def _plain(value: Any) -> Any:
    """JSON for the few values that are not: the C encoder calls it for those alone."""
    if isinstance(value, Decimal | uuid.UUID):
        return str(value)
    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError(f"cannot hash {type(value).__name__}")


def _stored_encoder() -> Any:
    """json.dumps(..., sort_keys=True, separators=(",", ":")) as one prebuilt C encoder: the
    same text, without building an encoder for every event."""
    canonical = json.JSONEncoder(sort_keys=True, separators=(",", ":"), default=_plain)
    make = getattr(json.encoder, "c_make_encoder", None)
    if make is None:  # a Python without the C accelerator: the same text, slower
        return lambda value, _level: [canonical.encode(value)]
    return make(
        None, _plain, json.encoder.encode_basestring_ascii, None, ":", ",", True, False, True
    )


_encode_stored = _stored_encoder()


def chain_digest(previous: str, topic: str, fields: Mapping[str, Any]) -> str:
    """sha256 over the previous digest, the event's topic and its fields (minus the digest)."""
    body = dict(fields)
    body.pop("chain", None)
    text = "".join(_encode_stored([topic, body], 0))
    return hashlib.sha256((previous + text).encode()).hexdigest()


def stored_digest(
    previous: str,
    topic: str,
    originator_id: uuid.UUID | str,
    originator_version: int,
    state: dict[str, Any],
) -> str:
    """The digest a stored event must carry, from its decoded stored state (`escrow audit`).

    Takes the stored state as decoded by the transcoder, never an event object, so a later
    class version (upcasting) never changes what an old event is checked against. `state` is
    consumed (its `chain` removed). `class_version` is added by the mapper on storing and was
    never hashed.
    """
    state.pop("class_version", None)
    state.pop("chain", None)
    state["originator_id"] = originator_id
    state["originator_version"] = originator_version
    # The text chain_digest hashes, written in one C-encoder pass (a million events per audit):
    # only the few Decimal/datetime/UUID values go through Python.
    text = "".join(_encode_stored([topic, state], 0))
    return hashlib.sha256((previous + text).encode()).hexdigest()


def evidence_entry(event: Any, description: str, refs: list[str]) -> dict[str, Any]:
    """One piece of evidence as an appeal or complaint keeps it (A8, E6): never deleted."""
    return {"by": event.actor, "at": event.timestamp, "description": description, "refs": refs}


class EscrowAggregate(Aggregate):
    """Base of Order, Appeal and Trader: one way to record an event."""

    KIND: ClassVar[str]
    if TYPE_CHECKING:  # assigned by the events' apply; see Order for why not at run time
        ref: str
        chain_head: str

    class Event(Aggregate.Event):
        actor: str
        rule: str | None
        chain: str

        def apply(self, aggregate: Any) -> None:
            aggregate.chain_head = self.chain

    class Created(Event, Aggregate.Created):
        def apply(self, aggregate: Any) -> None:
            aggregate.chain_head = self.chain

    @classmethod
    def _start(
        cls,
        event_class: type[Aggregate.Created],
        *,
        actor: str,
        rule: str | None,
        at: datetime,
        **facts: Any,
    ) -> Self:
        originator_id = stream_id(cls.KIND, facts["ref"])
        fields = {
            "originator_topic": get_topic(cls),
            "originator_id": originator_id,
            "originator_version": cls.INITIAL_VERSION,
            "timestamp": at,
            "actor": actor,
            "rule": rule,
            **facts,
        }
        chain = chain_digest("", get_topic(event_class), fields)
        return cls._create(
            event_class,
            id=originator_id,
            timestamp=at,
            actor=actor,
            rule=rule,
            chain=chain,
            **facts,
        )

    def _record(
        self,
        event_class: type[Aggregate.Event],
        *,
        actor: str,
        rule: str | None,
        at: datetime,
        **facts: Any,
    ) -> None:
        """Record an event at `at`, or at the stream's last time if `at` is earlier: a stream's
        time never goes backwards, whatever the clock of the process recording it says."""
        self._chain(event_class, actor=actor, rule=rule, at=max(at, self.modified_on), **facts)

    def _chain(
        self,
        event_class: type[Aggregate.Event],
        *,
        actor: str,
        rule: str | None,
        at: datetime,
        **facts: Any,
    ) -> None:
        """Trigger the event with its chain digest, exactly at `at`."""
        fields = {
            "originator_id": self.id,
            "originator_version": self.version + 1,
            "timestamp": at,
            "actor": actor,
            "rule": rule,
            **facts,
        }
        chain = chain_digest(self.chain_head, get_topic(event_class), fields)
        self.trigger_event(event_class, timestamp=at, actor=actor, rule=rule, chain=chain, **facts)
