"""`escrow audit verify`: one streaming pass over a whole store's log.

Per stored event: its version follows its stream's last one, and its stored chain equals
sha256(previous chain, topic, stored fields), recomputed from the stored JSON (decoded by the
application's transcoder, never upcast); then the invariants of rules.md for its topic. Per
stream only a short list of fields is kept, so memory follows the number of streams, not of
events. Checks across streams (a sanction and its appeal) are gathered and done at the end.

With several jobs, each process takes the streams of one partition (by the last hex digit of the
stream id, filtered in SQL), so every stream is still checked in order by one process.
"""

from __future__ import annotations

import multiprocessing
import os
import queue
import resource
import traceback
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Context, Decimal
from typing import Any
from uuid import UUID

from commands.audit.history import History, kind_of, plain, seal_digest
from escrow.appeal import Appeal
from escrow.log import Row, partition_of
from escrow.order import Order
from escrow.recording import stored_digest
from escrow.trader import Trader
from escrow.vocabulary import (
    APPEAL_TERMINAL,
    ORDER_TERMINAL,
    SANCTION_RULE,
    OrderState,
    Reason,
    SanctionKind,
)

EXACT = Context(prec=200)  # per-asset sums: 15 + 18 digits exceed the default 28
MAX_FINDINGS = 10_000  # kept in full; beyond, only counted (a wrecked store stays printable)
ZERO = Decimal(0)
S2 = SanctionKind.TRADING_SUSPENSION_24H


@dataclass(frozen=True)
class Finding:
    """One violation: where (stream, version) and which rule, in words an auditor reads."""

    kind: str
    ref: str
    stream: str
    version: int | None
    rule: str
    message: str

    def line(self) -> str:
        at = f" v{self.version}" if self.version is not None else ""
        return f"{self.kind} {self.ref or self.stream}{at} [{self.rule}] {self.message}"

    def as_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "ref": self.ref,
            "stream": self.stream,
            "version": self.version,
            "rule": self.rule,
            "message": self.message,
        }


# One list per stream (a list, not an object: a million events, bounded memory):
# [version, chain, kind, ...the kind's fields]. Amounts stay as their stored text until summed;
# a deadline is dropped once it can no longer fire.
V, CHAIN, K = 0, 1, 2
OTHER, ORDER, APPEAL, TRADER = 0, 1, 2, 3
O_ASSET, O_AMOUNT, O_DEADLINE, O_STATE, O_SETTLED, O_OPEN, O_ISSUES, O_EXPIRED = range(3, 11)
A_REF, A_BUYER, A_SELLER, A_REASON, A_STATE, A_FREEZE, A_FROZEN, A_PROOF = range(3, 11)
T_REF, T_SANCTIONS = 3, 4
RELEASED, RETURNED = 1, 2
WINDOW_OPEN, WINDOW_CLOSED, WINDOW_PROVEN = 0, 1, 2
S_KIND, S_EXPIRES, S_ENDED = range(3)
MOVEMENT = {RELEASED: "released", RETURNED: "returned"}

# Shared string objects for the words every stream repeats.
_WORDS: dict[str, str] = {}


def _word(text: str) -> str:
    return _WORDS.setdefault(text, text)


def _raw(chain: str) -> bytes:
    """A chain digest as its 32 bytes (half the memory of its hex text, kept per stream)."""
    try:
        return bytes.fromhex(chain)
    except (ValueError, TypeError):
        return str(chain).encode()  # not a digest at all: reported, and it links to nothing


def _time(text: str | None) -> datetime | None:
    return None if text is None else datetime.fromisoformat(text)


@dataclass
class Partial:
    """What one process found, and what the checks across streams need from it."""

    events: int = 0
    streams: int = 0
    last_id: int = 0
    findings: list[Finding] = field(default_factory=list)
    more_findings: int = 0
    appeals: dict[str, tuple[str, str, str]] = field(
        default_factory=dict
    )  # ref: buyer, seller, reason
    links: list[tuple[str, str, int, str, str | None]] = field(default_factory=list)  # sanctions
    refusals: dict[tuple[str, str], str] = field(default_factory=dict)  # (seller, at): appeal
    s1: dict[tuple[str, str], tuple[str, int, str | None]] = field(default_factory=dict)
    assets: dict[str, list[Decimal]] = field(default_factory=dict)  # locked, released, returned
    peak_rss_kb: int = 0

    def merge(self, other: Partial) -> None:
        self.events += other.events
        self.streams += other.streams
        self.last_id = max(self.last_id, other.last_id)
        room = max(MAX_FINDINGS - len(self.findings), 0)
        self.findings += other.findings[:room]
        self.more_findings += other.more_findings + max(0, len(other.findings) - room)
        self.appeals.update(other.appeals)
        self.links += other.links
        self.refusals.update(other.refusals)
        self.s1.update(other.s1)
        for asset, sums in other.assets.items():
            mine = self.assets.setdefault(asset, [ZERO, ZERO, ZERO])
            for i in range(3):
                mine[i] = EXACT.add(mine[i], sums[i])
        self.peak_rss_kb += other.peak_rss_kb


@dataclass
class Report:
    events: int
    streams: int
    findings: list[Finding]
    more_findings: int
    assets: dict[str, dict[str, Decimal]]
    ledger_checked: bool
    seal_checked: bool
    peak_rss_kb: int = 0

    @property
    def clean(self) -> bool:
        return not self.findings and not self.more_findings

    @property
    def count(self) -> int:
        return len(self.findings) + self.more_findings

    def as_json(self) -> dict[str, Any]:
        return dict(
            plain(
                {
                    "clean": self.clean,
                    "events": self.events,
                    "streams": self.streams,
                    "violations": [f.as_json() for f in self.findings],
                    "more_violations": self.more_findings,
                    "assets": self.assets,
                    "ledger_checked": self.ledger_checked,
                    "seal_checked": self.seal_checked,
                }
            )
        )


Handler = Callable[[list[Any], str, int, str, dict[str, Any]], object]


class Verifier:
    def __init__(self, history: History, heads: dict[str, tuple[int, str]] | None = None):
        self.history = history
        self.out = Partial()
        self.streams: dict[str, list[Any]] = {}
        self.heads = dict(heads or {})
        moved = (
            Appeal.ReviewStarted,
            Appeal.Cancelled,
            Appeal.RefundRequested,
            Appeal.RefundReported,
            Appeal.RefundConfirmed,
            Appeal.TopUpAgreed,
            Appeal.TopUpRefused,
            Appeal.TopUpConfirmed,
            Appeal.Resolved,
        )
        self.rules: dict[str, Handler] = {c.TOPIC: self._appeal_moved for c in moved}
        self.rules.update(
            {
                Order.Created.TOPIC: self._order_created,
                Order.MarkedPaid.TOPIC: self._order_moved,
                Order.Released.TOPIC: self._order_released,
                Order.Cancelled.TOPIC: self._order_cancelled,
                Order.AppealOpened.TOPIC: self._order_appeal_opened,
                Order.AppealCancelled.TOPIC: self._order_appeal_cancelled,
                Order.AppealResolved.TOPIC: self._order_appeal_resolved,
                Appeal.Opened.TOPIC: self._appeal_opened,
                Appeal.PaymentProofRequested.TOPIC: self._proof_requested,
                Appeal.PaymentProofSubmitted.TOPIC: self._proof_submitted,
                Appeal.ProofDeadlinePassed.TOPIC: self._proof_deadline_passed,
                Appeal.FreezeProofSubmitted.TOPIC: self._freeze_proof_submitted,
                Appeal.FreezeWindowClosed.TOPIC: self._freeze_window_closed,
                Appeal.RefundRefused.TOPIC: self._refund_refused,
                Trader.Registered.TOPIC: self._trader_registered,
                Trader.Sanctioned.TOPIC: self._sanctioned,
                Trader.SanctionExpired.TOPIC: self._sanction_expired,
                Trader.SanctionLifted.TOPIC: self._sanction_lifted,
            }
        )

    def find(self, stream: str, version: int | None, rule: str, message: str) -> None:
        if len(self.out.findings) >= MAX_FINDINGS:
            self.out.more_findings += 1
        else:
            self.out.findings.append(Finding("", "", stream, version, rule, message))

    # --- the pass -------------------------------------------------------------------------

    def feed(self, rows: Iterable[Row]) -> None:
        """Check rows in log order; the hot loop of `verify` (a million events per audit)."""
        streams, rules, fields_of, out = (
            self.streams,
            self.rules,
            self.history.hashed_fields,
            self.out,
        )
        heads = self.heads
        for nid, stream, version, topic, state in rows:
            out.events += 1
            out.last_id = nid
            try:
                f = fields_of(state, topic)
                stored = f["chain"]
                at = f["timestamp"]
            except Exception as e:
                self.find(stream, version, "chain", f"stored event cannot be read: {e!r}")
                continue
            s = streams.get(stream)
            expected, previous = (1, "") if s is None else (s[V] + 1, s[CHAIN].hex())
            if version == expected:
                if stored_digest(previous, topic, stream, version, f) != stored:
                    self.find(
                        stream,
                        version,
                        "chain",
                        "does not match its chain digest: its content was changed, or it was "
                        "forged and inserted",
                    )
            else:
                accepted = self._out_of_sequence(
                    stream, version, expected, previous, topic, f, stored
                )
                if accepted is None:
                    continue
                version = accepted
            chain = _raw(stored)
            if s is None:
                s = streams[stream] = [version, chain, OTHER]
            else:
                s[V], s[CHAIN] = version, chain
            if heads and stream in heads:
                self._check_head(stream, version, stored)
            handle = rules.get(topic)
            if handle is not None:
                try:
                    handle(s, stream, version, at, f)
                except (KeyError, TypeError, IndexError, ValueError, ArithmeticError) as e:
                    self.find(stream, version, "chain", f"fields unreadable: {e!r}")

    def _out_of_sequence(
        self,
        stream: str,
        version: int,
        expected: int,
        previous: str,
        topic: str,
        f: dict[str, Any],
        stored: str,
    ) -> int | None:
        """A version that does not follow the last: say what happened, and the version to
        take it as (None: skip it)."""
        if stored_digest(previous, topic, stream, expected, f) == stored:
            self.find(
                stream,
                version,
                "chain",
                f"holds the event recorded as version {expected}: stored versions were changed "
                "(events reordered or swapped)",
            )
            return expected
        if version > expected:
            gap = str(expected) if version == expected + 1 else f"{expected}–{version - 1}"
            self.find(stream, version, "chain", f"version {gap} missing before it: removed")
            return version
        self.find(
            stream,
            version,
            "chain",
            f"stored after version {expected - 1} of its stream: inserted later, or reordered",
        )
        return None

    def _check_head(self, stream: str, version: int, stored: str) -> None:
        sealed_version, sealed_chain = self.heads[stream]
        if version == sealed_version:
            del self.heads[stream]
            if stored != sealed_chain:
                self.find(
                    stream,
                    version,
                    "seal",
                    "chain differs from the sealed head: history up to here was rewritten "
                    "after the seal",
                )

    # --- orders: O1–O5, A3, A5, A7 --------------------------------------------------------

    def _order_created(
        self, s: list[Any], stream: str, version: int, at: str, f: dict[str, Any]
    ) -> None:
        amount, asset = f["amount"], _word(f["asset"])
        if not Decimal(amount) > 0:
            self.find(stream, version, "O1", f"locks {amount} {asset}: not a positive amount")
            amount = "0"
        deadline = _time(f["payment_deadline"])
        state = _word(f["state"])
        self.streams[stream] = [
            s[V],
            s[CHAIN],
            ORDER,
            asset,
            amount,
            deadline,
            state,
            None,
            None,
            (),
            False,
        ]
        sums = self.out.assets.get(asset)
        if sums is None:
            sums = self.out.assets[asset] = [ZERO, ZERO, ZERO]
        sums[0] = EXACT.add(sums[0], Decimal(amount))

    def _order_moved(
        self, s: list[Any], stream: str, version: int, at: str, f: dict[str, Any]
    ) -> bool:
        """Terminal states are final; escrow is settled once (released or returned)."""
        if s[K] != ORDER:
            return False  # its first event is missing: the chain check reported it
        old, new = s[O_STATE], _word(f["state"])
        if old in ORDER_TERMINAL and new != old:
            self.find(stream, version, "terminal", f"order left the terminal state {old} for {new}")
        if new in ORDER_TERMINAL:
            movement = RELEASED if new == OrderState.COMPLETED else RETURNED
            if s[O_SETTLED] is None:
                s[O_SETTLED] = movement
                sums = self.out.assets[s[O_ASSET]]
                sums[movement] = EXACT.add(sums[movement], Decimal(s[O_AMOUNT]))
            elif s[O_SETTLED] != movement:
                self.find(
                    stream,
                    version,
                    "escrow",
                    f"escrow of {s[O_AMOUNT]} {s[O_ASSET]} settled twice: "
                    f"{MOVEMENT[s[O_SETTLED]]}, then {MOVEMENT[movement]}",
                )
        if new != OrderState.AWAITING_PAYMENT:
            s[O_DEADLINE] = None  # the payment window can no longer fire
        s[O_STATE] = new
        return True

    def _order_released(
        self, s: list[Any], stream: str, version: int, at: str, f: dict[str, Any]
    ) -> None:
        if s[K] == ORDER and s[O_OPEN] is not None:
            self.find(
                stream,
                version,
                "A5",
                f"released by {f.get('actor')} while appeal {s[O_OPEN]} was open",
            )
        self._order_moved(s, stream, version, at, f)

    def _order_cancelled(
        self, s: list[Any], stream: str, version: int, at: str, f: dict[str, Any]
    ) -> None:
        if s[K] == ORDER and f.get("reason") == "payment_window_expired":
            deadline, state = s[O_DEADLINE], s[O_STATE]
            if s[O_EXPIRED]:
                self.find(stream, version, "O3", "payment window expiry fired a second time")
            elif state != OrderState.AWAITING_PAYMENT or deadline is None:
                self.find(
                    stream,
                    version,
                    "O3",
                    f"payment window expiry fired on a {state} order, where it no longer applied",
                )
            elif datetime.fromisoformat(at) < deadline:
                self.find(
                    stream,
                    version,
                    "O3",
                    f"payment window expiry fired early: at {at}, before the deadline "
                    f"{deadline.isoformat()}",
                )
            s[O_EXPIRED] = True
        self._order_moved(s, stream, version, at, f)

    def _order_appeal_opened(
        self, s: list[Any], stream: str, version: int, at: str, f: dict[str, Any]
    ) -> None:
        if not self._order_moved(s, stream, version, at, f):
            return
        if s[O_OPEN] is not None:
            self.find(
                stream,
                version,
                "A7",
                f"appeal {f['appeal']} opened while appeal {s[O_OPEN]} was still open",
            )
        s[O_OPEN] = f["appeal"]

    def _order_appeal_cancelled(
        self, s: list[Any], stream: str, version: int, at: str, f: dict[str, Any]
    ) -> None:
        if self._order_moved(s, stream, version, at, f):
            s[O_OPEN] = None

    def _order_appeal_resolved(
        self, s: list[Any], stream: str, version: int, at: str, f: dict[str, Any]
    ) -> None:
        if not self._order_moved(s, stream, version, at, f):
            return
        issue = f["issue"]
        if issue in s[O_ISSUES]:
            self.find(
                stream,
                version,
                "A3",
                f"appeal {f['appeal']} resolved issue {issue}, already resolved on this order",
            )
        else:
            s[O_ISSUES] = (*s[O_ISSUES], _word(issue))
        s[O_OPEN] = None

    # --- appeals: C1, C4, R1 --------------------------------------------------------------

    def _appeal_opened(
        self, s: list[Any], stream: str, version: int, at: str, f: dict[str, Any]
    ) -> None:
        ref, buyer, seller, reason = f["ref"], f["buyer"], f["seller"], _word(f["reason"])
        freeze, state = _time(f.get("freeze_deadline")), _word(f["state"])
        self.streams[stream] = [
            s[V],
            s[CHAIN],
            APPEAL,
            ref,
            buyer,
            seller,
            reason,
            state,
            freeze,
            WINDOW_OPEN,
            None,
        ]
        self.out.appeals[ref] = (buyer, seller, reason)

    def _appeal_moved(
        self, s: list[Any], stream: str, version: int, at: str, f: dict[str, Any]
    ) -> bool:
        if s[K] != APPEAL:
            return False  # its first event is missing: the chain check reported it
        old, new = s[A_STATE], _word(f["state"])
        if old in APPEAL_TERMINAL and new != old:
            self.find(
                stream, version, "terminal", f"appeal left the terminal state {old} for {new}"
            )
        s[A_STATE] = new
        return True

    def _proof_requested(
        self, s: list[Any], stream: str, version: int, at: str, f: dict[str, Any]
    ) -> None:
        if self._appeal_moved(s, stream, version, at, f):
            s[A_PROOF] = _time(f["deadline"])

    def _proof_submitted(
        self, s: list[Any], stream: str, version: int, at: str, f: dict[str, Any]
    ) -> None:
        if self._appeal_moved(s, stream, version, at, f):
            s[A_PROOF] = None

    def _proof_deadline_passed(
        self, s: list[Any], stream: str, version: int, at: str, f: dict[str, Any]
    ) -> None:
        if s[K] == APPEAL:
            deadline = s[A_PROOF]
            if deadline is None:
                self.find(
                    stream,
                    version,
                    "C1",
                    "payment proof deadline fired with none pending (a second time, or after "
                    "the proof)",
                )
            elif datetime.fromisoformat(at) < deadline:
                self.find(
                    stream,
                    version,
                    "C1",
                    f"payment proof deadline fired early: at {at}, before {deadline.isoformat()}",
                )
            s[A_PROOF] = None
        self._appeal_moved(s, stream, version, at, f)

    def _freeze_proof_submitted(
        self, s: list[Any], stream: str, version: int, at: str, f: dict[str, Any]
    ) -> None:
        if self._appeal_moved(s, stream, version, at, f) and s[A_FROZEN] == WINDOW_OPEN:
            s[A_FROZEN] = WINDOW_PROVEN

    def _freeze_window_closed(
        self, s: list[Any], stream: str, version: int, at: str, f: dict[str, Any]
    ) -> None:
        if s[K] == APPEAL:
            deadline, window = s[A_FREEZE], s[A_FROZEN]
            problem = None
            if deadline is None:
                problem = "freeze window closed on an appeal that has none"
            elif window == WINDOW_CLOSED:
                problem = "freeze window closing fired a second time"
            elif window == WINDOW_PROVEN:
                problem = "freeze window closing fired after the proof, where it no longer applied"
            elif datetime.fromisoformat(at) < deadline:
                problem = f"freeze window closed early: at {at}, before {deadline.isoformat()}"
            if problem:
                self.find(stream, version, "C4", problem)
            s[A_FROZEN] = WINDOW_CLOSED
        self._appeal_moved(s, stream, version, at, f)

    def _refund_refused(
        self, s: list[Any], stream: str, version: int, at: str, f: dict[str, Any]
    ) -> None:
        if self._appeal_moved(s, stream, version, at, f):
            self.out.refusals[(s[A_SELLER], at)] = s[A_REF]

    # --- traders: S1–S4 -------------------------------------------------------------------

    def _trader_registered(
        self, s: list[Any], stream: str, version: int, at: str, f: dict[str, Any]
    ) -> None:
        self.streams[stream] = [s[V], s[CHAIN], TRADER, f["ref"], {}]

    def _sanctioned(
        self, s: list[Any], stream: str, version: int, at: str, f: dict[str, Any]
    ) -> None:
        if s[K] != TRADER:
            return
        kind, appeal = _word(f["kind"]), f.get("appeal")
        s[T_SANCTIONS][f["sanction"]] = [kind, _time(f.get("expires_at")), False]
        if appeal is not None or kind == S2:
            self.out.links.append((s[T_REF], stream, version, kind, appeal))
        if kind == SanctionKind.P2P_SUSPENSION:
            self.out.s1[(s[T_REF], at)] = (stream, version, appeal)

    def _sanction_expired(
        self, s: list[Any], stream: str, version: int, at: str, f: dict[str, Any]
    ) -> None:
        if s[K] != TRADER:
            return
        for number in f["sanctions"]:
            sanction = s[T_SANCTIONS].get(number)
            rule = SANCTION_RULE.get(sanction[S_KIND], "S3") if sanction else "S3"
            if sanction is None:
                self.find(stream, version, rule, f"expiry of sanction #{number}, never applied")
            elif sanction[S_ENDED]:
                self.find(stream, version, rule, f"sanction #{number} expired after it had ended")
            elif sanction[S_EXPIRES] is None:
                self.find(stream, version, rule, f"sanction #{number} expired, but never expires")
            elif datetime.fromisoformat(at) < sanction[S_EXPIRES]:
                self.find(
                    stream,
                    version,
                    rule,
                    f"sanction #{number} expired early: at {at}, before "
                    f"{sanction[S_EXPIRES].isoformat()}",
                )
            if sanction is not None:
                sanction[S_ENDED] = True

    def _sanction_lifted(
        self, s: list[Any], stream: str, version: int, at: str, f: dict[str, Any]
    ) -> None:
        if s[K] != TRADER:
            return
        for number in f["sanctions"]:
            sanction = s[T_SANCTIONS].get(number)
            if sanction is None or sanction[S_ENDED]:
                rule = SANCTION_RULE.get(f.get("kind", ""), "S1")
                self.find(stream, version, rule, f"lifted sanction #{number}, which was not active")
            else:
                sanction[S_ENDED] = True

    # --- end of the pass ------------------------------------------------------------------

    def partial(self) -> Partial:
        """Sealed heads never reached become findings; findings get their stream's name."""
        for stream, (version, _chain) in self.heads.items():
            s = self.streams.get(stream)
            if s is None:
                message = "sealed stream no longer in the store: removed after the seal"
            elif s[V] < version:
                message = (
                    f"sealed at version {version}, the store ends at version {s[V]}: "
                    "events removed after the seal"
                )
            else:
                message = "sealed version missing from the store"
            self.find(stream, version, "seal", message)
        self.heads = {}
        names: dict[str, tuple[str, str]] = {}
        for i, found in enumerate(self.out.findings):
            if found.stream not in names:
                names[found.stream] = self._name(found.stream)
            kind, ref = names[found.stream]
            self.out.findings[i] = Finding(
                kind, ref, found.stream, found.version, found.rule, found.message
            )
        self.out.streams = len(self.streams)
        self.out.peak_rss_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return self.out

    def _name(self, stream: str) -> tuple[str, str]:
        """Kind and ref of a stream with findings, from its first stored event."""
        try:
            events = self.history.stream(UUID(stream))
        except Exception:  # an unreadable first event was reported already
            events = []
        if events:
            return kind_of(events[0][1]), str(events[0][2].get("ref", ""))
        return "stream", ""


def finish(
    out: Partial,
    ledger: tuple[int, dict[str, tuple[Decimal, Decimal, Decimal]]] | None,
    seal_checked: bool,
) -> Report:
    """The checks across streams, on what every process gathered, and the ledger."""
    extra: list[Finding] = []

    def find(trader: str, stream: str, version: int, rule: str, message: str) -> None:
        extra.append(Finding("trader", trader, stream, version, rule, message))

    for trader, stream, version, kind, ref in out.links:
        appeal = out.appeals.get(ref) if ref is not None else None
        if ref is not None and appeal is None:
            rule = "C4" if kind == S2 else "S1"
            find(trader, stream, version, rule, f"{kind} names appeal {ref}, which does not exist")
        elif kind == S2:
            if appeal is None:
                find(trader, stream, version, "C4", "S2 applied without the C4 appeal causing it")
            elif appeal[2] != Reason.BANK_ACCOUNT_FROZEN:
                find(
                    trader,
                    stream,
                    version,
                    "C4",
                    f"S2 from appeal {ref}, a {appeal[2]} appeal: only a C4 appeal causes it",
                )
            elif trader != appeal[0]:
                find(trader, stream, version, "C4", f"S2 on {trader}, not the buyer of {ref}")
        elif appeal is not None and trader not in appeal[:2]:
            find(trader, stream, version, "S1", f"{kind} names appeal {ref}, where it is no party")
    for (seller, at), ref in out.refusals.items():
        s1 = out.s1.get((seller, at))
        if s1 is not None and s1[2] != ref:
            find(
                seller,
                s1[0],
                s1[1],
                "S1",
                f"S1 recorded on the refund refused in appeal {ref} names {s1[2] or 'no appeal'}",
            )
    assets = {
        asset: {
            "locked": sums[0],
            "released": sums[1],
            "returned": sums[2],
            "in_escrow": EXACT.subtract(EXACT.subtract(sums[0], sums[1]), sums[2]) or ZERO,
        }
        for asset, sums in sorted(out.assets.items())
    }
    ledger_checked = ledger is not None and ledger[0] == out.last_id
    if ledger is not None and ledger_checked:
        for asset in sorted(assets.keys() | ledger[1].keys()):
            mine = assets.get(asset)
            events = (
                (mine["in_escrow"], mine["released"], mine["returned"]) if mine else (ZERO,) * 3
            )
            read = ledger[1].get(asset, (ZERO,) * 3)
            if read != events:
                extra.append(
                    Finding(
                        "ledger",
                        asset,
                        "",
                        None,
                        "escrow",
                        f"the ledger read model says in escrow/released/returned "
                        f"{'/'.join(map(str, read))}; the events say {'/'.join(map(str, events))}",
                    )
                )
    room = max(MAX_FINDINGS - len(out.findings), 0)
    return Report(
        events=out.events,
        streams=out.streams,
        findings=out.findings + extra[:room],
        more_findings=out.more_findings + max(0, len(extra) - room),
        assets=assets,
        ledger_checked=ledger_checked,
        seal_checked=seal_checked,
        peak_rss_kb=out.peak_rss_kb,
    )


def sealed_heads(sealed: dict[str, Any]) -> tuple[dict[str, tuple[int, str]], list[Finding]]:
    """The heads a seal lists, and a finding if its own digest does not match them."""
    heads = {s["stream"]: (int(s["version"]), s["chain"]) for s in sealed["streams"]}
    problems = []
    if seal_digest((k, v, c) for k, (v, c) in heads.items()) != sealed.get("digest"):
        problems.append(
            Finding("seal", "", "", None, "seal", "the seal's digest does not match its heads")
        )
    return heads, problems


def verify(
    history: History,
    *,
    sealed: dict[str, Any] | None = None,
    progress: Callable[[int], None] | None = None,
) -> Report:
    """Verify a whole store in this process."""
    heads, problems = sealed_heads(sealed) if sealed else ({}, [])
    verifier = Verifier(history, heads)
    for page in history.pages():
        verifier.feed(page)
        if progress:
            progress(len(page))
    out = verifier.partial()
    out.findings = problems + out.findings
    return finish(out, history.ledger(), sealed is not None)


def _worker(
    url: str, part: tuple[int, int], heads: dict[str, tuple[int, str]], results: Any
) -> None:
    try:
        with History.open(url) as history:
            verifier = Verifier(history, heads)
            for page in history.pages(part=part):
                verifier.feed(page)
                results.put(("progress", len(page)))
            out = verifier.partial()
        verifier.streams = {}  # per-stream state stays here: only what crosses streams travels
        results.put(("done", out))
    except BaseException:
        results.put(("error", traceback.format_exc()))


def verify_store(
    url: str,
    *,
    sealed: dict[str, Any] | None = None,
    jobs: int = 1,
    progress: Callable[[int], None] | None = None,
) -> Report:
    """Verify the store at `url`. With `jobs` > 1 this process takes one partition of the
    streams and forks a worker per other partition; the checks across streams then run on
    what all of them gathered."""
    if jobs <= 1:
        with History.open(url) as history:
            return verify(history, sealed=sealed, progress=progress)
    heads, problems = sealed_heads(sealed) if sealed else ({}, [])
    mine = [{s: h for s, h in heads.items() if partition_of(s, jobs) == k} for k in range(jobs)]
    methods = multiprocessing.get_all_start_methods()
    context: Any = multiprocessing.get_context("fork" if "fork" in methods else "spawn")
    results = context.Queue()
    # Workers start before this process opens any connection (no pool thread is forked).
    workers = [
        context.Process(target=_worker, args=(url, (k, jobs), mine[k], results), daemon=True)
        for k in range(1, jobs)
    ]
    for w in workers:
        w.start()
    merged = Partial()
    waiting = len(workers)

    def drain(block: bool) -> None:
        nonlocal waiting
        while waiting:
            try:
                kind, payload = results.get(timeout=1.0) if block else results.get_nowait()
            except queue.Empty:
                if block and not any(w.is_alive() for w in workers):
                    raise RuntimeError("a verify worker died") from None
                if not block:
                    return
                continue
            if kind == "progress":
                if progress:
                    progress(payload)
            elif kind == "done":
                merged.merge(payload)
                waiting -= 1
            else:
                raise RuntimeError(f"a verify worker failed:\n{payload}")

    try:
        with History.open(url) as history:
            verifier = Verifier(history, mine[0])
            for page in history.pages(part=(0, jobs)):
                verifier.feed(page)
                if progress:
                    progress(len(page))
                drain(block=False)
            out = verifier.partial()
            verifier.streams = {}
            ledger = history.ledger()
        drain(block=True)
    finally:
        for w in workers:
            w.join(timeout=10)
            if w.is_alive():
                w.kill()
    merged.merge(out)
    merged.findings = problems + merged.findings
    return finish(merged, ledger, sealed is not None)


def default_jobs(events: int) -> int:
    """A second process pays off on large stores; one per core, at most two."""
    return min(os.cpu_count() or 1, 2) if events >= 20_000 else 1
