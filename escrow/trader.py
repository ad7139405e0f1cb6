"""The Trader aggregate, one stream per person: sanctions and the P2P permissions they
restrict (O7, S1–S4), and whether the person is appointed to customer service.

A trader's stream starts with its first sanction or appointment; a person with no stream has
never been sanctioned nor appointed, and may trade. Appointments live here because create_order
reads both parties' streams for O7 anyway: refusing an agent as a party (O1) costs no read. Whether a sanction is active depends on the time asked about, so a
lapsed S2 or S3 stops blocking at its expiry even before the scheduler records the expiry.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

from escrow.actors import Actor
from escrow.errors import InvalidState
from escrow.policy import Policy
from escrow.recording import EscrowAggregate
from escrow.vocabulary import SANCTION_RULE, Role, SanctionKind, Severity

ONCE_ACTIVE = frozenset({SanctionKind.P2P_SUSPENSION, SanctionKind.PERMANENT_SUSPENSION})


class Trader(EscrowAggregate):
    KIND = "trader"
    TOPIC = "escrow:Trader"

    if TYPE_CHECKING:  # see Order: the Registered event's apply assigns every field
        ref: str
        sanctions: list[dict[str, Any]]
        partial_bans: int
        role: str | None

    class Event(EscrowAggregate.Event):
        TOPIC = "escrow:Trader.Event"

    class Registered(EscrowAggregate.Created):
        TOPIC = "escrow:Trader.Registered.v1"
        ref: str

        def apply(self, aggregate: Any) -> None:
            super().apply(aggregate)
            aggregate.ref = self.ref
            aggregate.sanctions = []
            aggregate.partial_bans = 0
            aggregate.role = None

    class Sanctioned(Event):
        TOPIC = "escrow:Trader.Sanctioned.v1"
        sanction: int
        kind: str
        severity: str | None
        appeal: str | None
        expires_at: datetime | None
        offence: int | None

        def apply(self, aggregate: Any) -> None:
            super().apply(aggregate)
            entry = {
                "id": self.sanction,
                "kind": self.kind,
                "severity": self.severity,
                "appeal": self.appeal,
                "since": self.timestamp,
                "expires_at": self.expires_at,
                "ended_at": None,
                "ended_by": None,
            }
            aggregate.sanctions = [*aggregate.sanctions, entry]
            if self.kind == SanctionKind.PARTIAL_BAN:
                aggregate.partial_bans += 1

    class SanctionEnded(Event):
        TOPIC = "escrow:Trader.SanctionEnded"
        sanctions: list[int]

        def apply(self, aggregate: Any) -> None:
            super().apply(aggregate)
            ended = set(self.sanctions)
            aggregate.sanctions = [
                dict(s, ended_at=self.timestamp, ended_by=self.actor) if s["id"] in ended else s
                for s in aggregate.sanctions
            ]

    class SanctionLifted(SanctionEnded):
        TOPIC = "escrow:Trader.SanctionLifted.v1"
        kind: str

    class SanctionExpired(SanctionEnded):
        TOPIC = "escrow:Trader.SanctionExpired.v1"

    class Appointed(Event):
        """Appointed to customer service, or moved between agent and supervisor."""

        TOPIC = "escrow:Trader.Appointed.v1"
        name: str
        supervisor: bool

        def apply(self, aggregate: Any) -> None:
            super().apply(aggregate)
            aggregate.role = Role.SUPERVISOR.value if self.supervisor else Role.AGENT.value

    class Dismissed(Event):
        TOPIC = "escrow:Trader.Dismissed.v1"
        name: str

        def apply(self, aggregate: Any) -> None:
            super().apply(aggregate)
            aggregate.role = None

    @classmethod
    def register(cls, name: str, at: datetime) -> Trader:
        return cls._start(cls.Registered, actor="platform", rule=None, at=at, ref=name)

    def appoint(self, supervisor: bool, by: Actor, at: datetime) -> None:
        """An agent (or supervisor) from now on; appointing someone to the role they hold is
        `invalid_state` (so a repeated appointment never looks like a change)."""
        role = Role.SUPERVISOR if supervisor else Role.AGENT
        if self.role == role:
            raise InvalidState(f"{self.ref} is already a{'n' if role == Role.AGENT else ''} {role}")
        self._record(
            self.Appointed, actor=by.name, rule=None, at=at, name=self.ref, supervisor=supervisor
        )

    def dismiss(self, by: Actor, at: datetime) -> None:
        if self.role is None:
            raise InvalidState(f"{self.ref} is not appointed to customer service")
        self._record(self.Dismissed, actor=by.name, rule=None, at=at, name=self.ref)

    def active(self, at: datetime) -> list[dict[str, Any]]:
        return [
            s
            for s in self.sanctions
            if s["ended_at"] is None and (s["expires_at"] is None or at < s["expires_at"])
        ]

    def can_trade(self, at: datetime) -> bool:
        return not self.active(at)

    def sanction(
        self,
        kind: str,
        *,
        by: Actor,
        at: datetime,
        policy: Policy,
        rule: str | None = None,
        severity: str | None = None,
        appeal: str | None = None,
    ) -> None:
        if kind in ONCE_ACTIVE and any(s["kind"] == kind for s in self.active(at)):
            raise InvalidState(f"{self.ref} already has an active {kind}", SANCTION_RULE[kind])
        expires_at: datetime | None = None
        offence: int | None = None
        if kind == SanctionKind.PARTIAL_BAN:
            offence = self.partial_bans + 1
            severe = severity == Severity.SEVERE
            expires_at = at + policy.partial_ban_duration(self.partial_bans, severe)
        elif kind == SanctionKind.TRADING_SUSPENSION_24H:
            expires_at = at + policy.temporary_suspension
        self._record(
            self.Sanctioned,
            actor=by.name,
            rule=rule or SANCTION_RULE[kind],
            at=at,
            sanction=len(self.sanctions) + 1,
            kind=kind,
            severity=severity,
            appeal=appeal,
            expires_at=expires_at,
            offence=offence,
        )

    def lift(self, kind: str, by: Actor, at: datetime) -> None:
        ids = [s["id"] for s in self.active(at) if s["kind"] == kind]
        if not ids:
            raise InvalidState(f"{self.ref} has no active {kind} to lift", SANCTION_RULE[kind])
        self._record(
            self.SanctionLifted,
            actor=by.name,
            rule=SANCTION_RULE[kind],
            at=at,
            sanctions=ids,
            kind=kind,
        )

    def lift_from_appeal(self, appeal: str, by: Actor, at: datetime, rule: str) -> None:
        """E4: end every sanction `appeal` applied that is still active, one event per kind
        (the kind is what a lift names); none active records nothing."""
        kinds: dict[str, list[int]] = {}
        for s in self.active(at):
            if s["appeal"] == appeal:
                kinds.setdefault(s["kind"], []).append(s["id"])
        for kind, ids in sorted(kinds.items()):
            self._record(
                self.SanctionLifted, actor=by.name, rule=rule, at=at, sanctions=ids, kind=kind
            )

    def expire_due(self, by: Actor, at: datetime) -> bool:
        """S2/S3: record the expiry of every sanction that has lapsed, one event per rule
        (each names the rule that set the duration); False if none had lapsed."""
        due: dict[str, list[int]] = {}
        for s in self.sanctions:
            if s["ended_at"] is None and s["expires_at"] is not None and s["expires_at"] <= at:
                due.setdefault(SANCTION_RULE[s["kind"]], []).append(s["id"])
        for rule, ids in sorted(due.items()):
            self._record(self.SanctionExpired, actor=by.name, rule=rule, at=at, sanctions=ids)
        return bool(due)
