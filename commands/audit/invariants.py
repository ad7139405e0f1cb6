"""The invariants of rules.md, checked event by event as a stream is read in order.

One handler per topic, kept apart from the walk that feeds them (`verify`), so that a rule
added to rules.md is checked here without touching how the log is read, chained or split
across processes. Each handler sees only its stream's short state list and the event's stored
fields; what needs other streams is gathered in the `Partial` for `finish`.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from decimal import Decimal
from typing import Any

from escrow.appeal import Appeal
from escrow.commands.audit.report import EXACT, MAX_FINDINGS, S2, ZERO, Finding, Partial
from escrow.complaint import Complaint
from escrow.order import Order
from escrow.trader import Trader
from escrow.vocabulary import (
    APPEAL_TERMINAL,
    ORDER_TERMINAL,
    SANCTION_RULE,
    OrderState,
    SanctionKind,
)

# One list per stream (a list, not an object: a million events, bounded memory):
# [version, chain, kind, ...the kind's fields]. Amounts stay as their stored text until summed;
# a deadline is dropped once it can no longer fire.
V, CHAIN, K = 0, 1, 2
OTHER, ORDER, APPEAL, TRADER, COMPLAINT = 0, 1, 2, 3, 4
O_ASSET, O_AMOUNT, O_DEADLINE, O_STATE, O_SETTLED, O_OPEN, O_ISSUES, O_EXPIRED = range(3, 11)
A_REF, A_BUYER, A_SELLER, A_REASON, A_STATE, A_FREEZE, A_FROZEN, A_PROOF = range(3, 11)
A_CLAWBACK, A_RECOVERED, A_CLAWBACK_OPEN = range(11, 14)
C_FIAT_AMOUNT, C_DECISION = 3, 4
T_REF, T_SANCTIONS = 3, 4
RELEASED, RETURNED = 1, 2
WINDOW_OPEN, WINDOW_CLOSED, WINDOW_PROVEN = 0, 1, 2
S_KIND, S_EXPIRES, S_ENDED = range(3)
MOVEMENT = {RELEASED: "released", RETURNED: "returned"}

# Shared string objects for the words every stream repeats.
_WORDS: dict[str, str] = {}


def _word(text: str) -> str:
    return _WORDS.setdefault(text, text)


def _time(text: str | None) -> datetime | None:
    return None if text is None else datetime.fromisoformat(text)


Handler = Callable[[list[Any], str, int, str, dict[str, Any]], object]


class Invariants:
    """The base of `Verifier`: its rules, apart from how it walks and chains the log."""

    def __init__(self) -> None:
        self.out = Partial()
        self.streams: dict[str, list[Any]] = {}
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
                Appeal.ReversalConfirmed.TOPIC: self._reversal_confirmed,
                Appeal.RecoveryRecorded.TOPIC: self._recovery_recorded,
                Appeal.ClawbackWaived.TOPIC: self._clawback_waived,
                Complaint.Filed.TOPIC: self._complaint_filed,
                Complaint.Decided.TOPIC: self._complaint_decided,
            }
        )

    def find(self, stream: str, version: int | None, rule: str, message: str) -> None:
        if len(self.out.findings) >= MAX_FINDINGS:
            self.out.more_findings += 1
        else:
            self.out.findings.append(Finding("", "", stream, version, rule, message))

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
            None,
            "0",
            False,
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

    # --- clawbacks: K1–K3 ------------------------------------------------------------------

    def _reversal_confirmed(
        self, s: list[Any], stream: str, version: int, at: str, f: dict[str, Any]
    ) -> None:
        if s[K] != APPEAL:
            return
        if s[A_CLAWBACK] is not None:
            self.find(stream, version, "K1", "a reversal confirmed a second time in one appeal")
        if not Decimal(f["amount"]) > 0:
            self.find(stream, version, "K1", f"a clawback of {f['amount']}: not positive")
        s[A_CLAWBACK], s[A_RECOVERED], s[A_CLAWBACK_OPEN] = f["amount"], "0", True

    def _recovery_recorded(
        self, s: list[Any], stream: str, version: int, at: str, f: dict[str, Any]
    ) -> None:
        """K2: recovered never above the clawback, and only while it is open."""
        if s[K] != APPEAL:
            return
        if not s[A_CLAWBACK_OPEN]:
            self.find(stream, version, "K2", "a recovery recorded with no open clawback")
            return
        recovered = Decimal(s[A_RECOVERED]) + Decimal(f["amount"])
        if recovered > Decimal(s[A_CLAWBACK]):
            self.find(
                stream,
                version,
                "K2",
                f"recovered {recovered}, above the clawback of {s[A_CLAWBACK]}",
            )
        s[A_RECOVERED] = str(recovered)
        s[A_CLAWBACK_OPEN] = f["clawback_state"] == "open"

    def _clawback_waived(
        self, s: list[Any], stream: str, version: int, at: str, f: dict[str, Any]
    ) -> None:
        if s[K] != APPEAL:
            return
        if not s[A_CLAWBACK_OPEN]:
            self.find(stream, version, "K3", "a clawback waived that was not open")
        s[A_CLAWBACK_OPEN] = False

    # --- complaints: E2, E4 ----------------------------------------------------------------

    def _complaint_filed(
        self, s: list[Any], stream: str, version: int, at: str, f: dict[str, Any]
    ) -> None:
        self.streams[stream] = [s[V], s[CHAIN], COMPLAINT, f["fiat_amount"], None]

    def _complaint_decided(
        self, s: list[Any], stream: str, version: int, at: str, f: dict[str, Any]
    ) -> None:
        """E2: decided once; E4: compensation only when overturned, at most the fiat amount."""
        if s[K] != COMPLAINT:
            return
        if s[C_DECISION] is not None:
            self.find(stream, version, "E2", f"complaint decided again ({s[C_DECISION]} before)")
        compensation = f.get("compensation")
        if compensation is not None:
            if f["decision"] != "overturned":
                self.find(stream, version, "E4", f"compensation with a {f['decision']} decision")
            elif not 0 < Decimal(compensation) <= Decimal(s[C_FIAT_AMOUNT]):
                self.find(
                    stream,
                    version,
                    "E4",
                    f"compensation of {compensation}, above the order's fiat amount "
                    f"{s[C_FIAT_AMOUNT]} (or not positive)",
                )
        s[C_DECISION] = _word(f["decision"])

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
