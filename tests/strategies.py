"""Hypothesis strategies for random command sequences against one escrow engine.

The generator looks at what the engine last reported (the `World`) so that most commands fit
the current state and the actor's role (the sequences reach refunds, proofs, top-ups and
resolutions), while a steady share is deliberately off: the wrong actor, the wrong state, an
unknown id, a duplicate id, an amount above the limits or not positive. The generator is
only a guide to reach deep states: it is never the oracle, the invariants are.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from decimal import Decimal
from random import Random
from typing import Any

from hypothesis import strategies as st

from escrow.durations import parse_duration
from escrow.views import AppealView, ComplaintView, OrderView, TraderView
from escrow.vocabulary import BUYER_REASONS, SELLER_REASONS, Reason

TRADERS = ("alice", "bob", "erin", "frank")
AGENTS = ("carol", "dave", "sam")  # sam also handles complaints (tests.conftest.SUPERVISORS)
STRANGERS = ("mallory", "system")  # a trader who is no party, and the reserved system actor
ASSETS = ("USDT", "BTC")
AMOUNTS = ("1", "0.5", "250", "1000.123456")
PRICES = ("0.92", "1", "7.3")
DEVIATIONS = (None, None, "1.05", "1.2")  # reference = price × this; 1.2 breaks B1a's 10%
WAITS = ("1m", "10m", "16m", "2h", "1d", "25h", "2d", "8d", "31d", "61d")
SHORT_WAITS = ("1m", "1m", "10m", "10m", "16m", "2h", "1d", "25h")
REASONS = tuple(r.value for r in Reason)
SANCTIONS = ("p2p_suspension", "partial_ban", "permanent_suspension")
LIFTABLE = (*SANCTIONS, "trading_suspension_24h")

ORDER_COMMANDS = ("mark_paid", "cancel_order", "release", "open_appeal")
APPEAL_COMMANDS = (
    "add_evidence",
    "cancel_appeal",
    "start_review",
    "request_refund",
    "report_refund",
    "confirm_refund",
    "refuse_refund",
    "request_payment_proof",
    "submit_payment_proof",
    "agree_top_up",
    "refuse_top_up",
    "confirm_top_up",
    "submit_freeze_proof",
    "resolve_appeal",
    "confirm_reversal",
    "record_recovery",
    "waive_clawback",
)
COMPLAINT_COMMANDS = (
    "file_complaint",
    "start_complaint_review",
    "decide_complaint",
    "withdraw_complaint",
    "add_complaint_evidence",
)
# What usually comes next for a complaint, by its state (E1–E6).
COMPLAINT_NEXT: dict[str, tuple[str, ...]] = {
    "filed": ("start_complaint_review",) * 3 + ("withdraw_complaint", "add_complaint_evidence"),
    "under_review": ("decide_complaint",) * 3 + ("add_complaint_evidence", "withdraw_complaint"),
}

# What usually comes next from each state: the guide that keeps sequences deep.
ORDER_NEXT: dict[str, tuple[str, ...]] = {
    "awaiting_payment": ("mark_paid",) * 5 + ("cancel_order", "wait"),
    "paid": ("release", "release", "cancel_order", "open_appeal", "open_appeal", "open_appeal"),
    "in_appeal": ("release",),
    "completed": ("open_appeal",),
    "cancelled": ("open_appeal",),
}
APPEAL_NEXT: dict[str, tuple[str, ...]] = {
    "open": ("start_review", "start_review", "start_review", "add_evidence", "cancel_appeal"),
    "under_review": ("resolve_appeal", "add_evidence", "apply_sanction"),
    "awaiting_refund": ("report_refund", "report_refund", "confirm_refund", "refuse_refund"),
    "awaiting_payment_proof": ("submit_payment_proof", "wait"),
    "awaiting_top_up": ("confirm_top_up", "confirm_top_up", "confirm_top_up", "refuse_top_up"),
    "awaiting_freeze_proof": ("submit_freeze_proof", "wait"),
}
# Under review, what each reason's guideline asks for before a resolution (B, C, R rules).
REVIEW_NEXT: dict[str, tuple[str, ...]] = {
    "seller_not_releasing": ("request_refund", "request_refund", "resolve_appeal"),
    "cancelled_after_payment": ("request_refund", "request_refund", "request_refund"),
    "amount_mismatch": ("request_refund", "request_refund", "request_refund"),
    "seller_payment_method_problem": ("resolve_appeal",),
    "verbal_abuse": ("apply_sanction", "apply_sanction"),
    "payment_not_received": ("request_payment_proof",) * 4,
    "insufficient_payment": ("agree_top_up",) * 3 + ("refuse_top_up",) * 2 + ("request_refund",),
    "non_real_name_payment": ("request_refund", "request_refund", "resolve_appeal"),
    "bank_account_frozen": ("apply_sanction", "resolve_appeal"),
    "payment_reversed": ("confirm_reversal", "confirm_reversal", "resolve_appeal"),
}
# How long a guided wait is, by what it waits for.
DEADLINE_WAITS: dict[str, tuple[str, ...]] = {
    "awaiting_payment": ("10m", "16m"),
    "awaiting_payment_proof": ("1d", "2d"),
    "awaiting_freeze_proof": ("2h", "25h"),
}


@dataclass(frozen=True)
class Step:
    """One thing the session does: a command, a wait followed by `tick`, or a re-send."""

    name: str  # a command name, "wait" or "resend"
    fields: dict[str, Any] = field(default_factory=dict)
    wait: timedelta | None = None

    def __str__(self) -> str:
        if self.name == "wait":
            return f"wait {self.fields['for']}"
        return f"{self.name} {self.fields}"


@dataclass
class World:
    """What the engine last reported: the session's view, not an oracle."""

    orders: dict[str, OrderView] = field(default_factory=dict)
    appeals: dict[str, AppealView] = field(default_factory=dict)
    traders: dict[str, TraderView] = field(default_factory=dict)
    complaints: dict[str, ComplaintView] = field(default_factory=dict)
    created: int = 0
    opened: int = 0
    filed: int = 0
    command_ids: int = 0
    steps: int = 0
    sent: list[Step] = field(default_factory=list)  # succeeded with a command_id


def pick(r: Random, options: Any) -> Any:
    choices = list(options)
    return choices[r.randrange(len(choices))]


def chance(r: Random, p: float) -> bool:
    return r.random() < p


def actor(r: Random, right: str | list[str], p_right: float = 0.85) -> str:
    """Usually the actor the command is meant for, sometimes anyone else."""
    rights = [right] if isinstance(right, str) else right
    if chance(r, p_right):
        return str(pick(r, rights))
    return str(pick(r, [*TRADERS, *AGENTS, *STRANGERS]))


def amount_near(r: Random, base: Decimal) -> str:
    """An amount around `base`: equal, smaller, larger, tiny, or not positive."""
    options = [base, base / 2, base + 10, base * 2, Decimal("1"), Decimal("0"), Decimal("-5")]
    weights = [4, 3, 2, 1, 2, 1, 1]
    value: Decimal = pick(r, [o for o, w in zip(options, weights, strict=True) for _ in range(w)])
    return str(value)


def draw_step(data: st.DataObject, world: World) -> Step:
    """The next step: mostly what fits the world, sometimes anything at all.

    Hypothesis draws one seed per step and the step's choices come from it: one draw per
    step instead of a dozen keeps examples fast, and shrinking still drops whole steps."""
    world.steps += 1  # the step number salts the seed: hypothesis often repeats small seeds
    r = Random(f"{data.draw(st.integers(0, 2**32 - 1), label='step')}:{world.steps}")
    roll = r.randrange(100)
    if roll < 6:
        return _wait(r)
    if roll < 11 and world.sent:
        return Step("resend", {"step": pick(r, range(len(world.sent)))})
    if roll < 22 or not world.orders:
        return _create_order(r, world)
    if roll < 26 and any(not t.can_trade for t in world.traders.values()):
        return _lift(r, world)
    if 26 <= roll < 40:
        after = _after_trade(r, world)
        if after is not None:
            return _with_command_id(r, world, after)
    if roll < 85:
        guided = _guided(r, world)
        if guided is not None:
            return _with_command_id(r, world, guided)
    name = pick(
        r,
        (*ORDER_COMMANDS, *APPEAL_COMMANDS, *COMPLAINT_COMMANDS, "apply_sanction", "lift_sanction"),
    )
    return _with_command_id(r, world, _command(r, world, name))


def _with_command_id(r: Random, world: World, step: Step) -> Step:
    if step.name in ("wait", "resend") or not chance(r, 0.15):
        return step
    world.command_ids += 1
    return Step(step.name, {**step.fields, "command_id": f"cmd-{world.command_ids}"})


def _wait(r: Random, choices: tuple[str, ...] | None = None) -> Step:
    text = pick(r, choices or (SHORT_WAITS if chance(r, 0.7) else WAITS))
    return Step("wait", {"for": text}, parse_duration(text))


def _guided(r: Random, world: World) -> Step | None:
    """A command chosen from what usually follows the state of a live order or appeal;
    live appeals come first, as they hold the deep states."""
    live = sorted(r for r, a in world.appeals.items() if a.state in APPEAL_NEXT)
    if live and chance(r, 0.7):
        ref = pick(r, live)
        a = world.appeals[ref]
        options = APPEAL_NEXT[a.state]
        if a.state == "under_review":
            settled = a.refund_state in ("confirmed", "refused") or a.top_up == "confirmed"
            settled = settled or a.clawback_state is not None
            more = ("resolve_appeal",) * 3 if settled else REVIEW_NEXT[a.reason]
            options = (*options, *more)
        if a.clawback_state == "open":
            options = (*options, "record_recovery", "record_recovery", "waive_clawback")
        name = pick(r, options)
        if name == "wait":
            return _wait(r, DEADLINE_WAITS[a.state])
        return _command(r, world, name, appeal=ref)
    if not world.orders:
        return None
    live = sorted(r for r, o in world.orders.items() if o.state in ("awaiting_payment", "paid"))
    quiet = sorted(r for r, o in world.orders.items() if o.open_appeal is None)
    if live and chance(r, 0.8):
        ref = pick(r, live)
    else:  # a closed order, mostly one with no appeal open (A2 appeals, A3, A6 window)
        ref = pick(r, quiet if quiet and chance(r, 0.8) else sorted(world.orders))
    state = world.orders[ref].state
    name = pick(r, ORDER_NEXT[state])
    if name == "wait":
        return _wait(r, DEADLINE_WAITS[state])
    return _command(r, world, name, order=ref)


def _after_trade(r: Random, world: World) -> Step | None:
    """After a resolution: a complaint filed or moved on (E1–E6), or a clawback worked on
    (K2, K3) on a resolved appeal."""
    live = sorted(k for k, c in world.complaints.items() if c.state in COMPLAINT_NEXT)
    if live and chance(r, 0.8):
        ref = pick(r, live)
        return _complaint_command(
            r, world, pick(r, COMPLAINT_NEXT[world.complaints[ref].state]), ref
        )
    resolved = sorted(k for k, a in world.appeals.items() if a.state == "resolved")
    if not resolved:
        return None
    ref = pick(r, resolved)
    if world.appeals[ref].clawback_state == "open" and chance(r, 0.5):
        return _command(r, world, pick(r, ("record_recovery", "waive_clawback")), appeal=ref)
    return _complaint_command(r, world, "file_complaint", None, appeal=ref)


def _complaint_command(
    r: Random, world: World, name: str, ref: str | None, appeal: str | None = None
) -> Step:
    if name == "file_complaint":
        if world.complaints and chance(r, 0.05):
            ref = pick(r, sorted(world.complaints))  # duplicate_id
        else:
            world.filed += 1
            ref = f"k{world.filed}"
        a = world.appeals.get(appeal or _appeal_ref(r, world, None))
        o = world.orders.get(a.order) if a else None
        parties = [o.buyer, o.seller] if o else ["bob"]
        return Step(
            name,
            {
                "complaint": ref,
                "appeal": a.appeal if a else "nowhere",
                "by": actor(r, parties),
                "statement": "the decision was wrong",
            },
        )
    if ref is None:
        ref = pick(r, sorted(world.complaints)) if world.complaints and chance(r, 0.95) else "k0"
    c = world.complaints.get(ref)
    complainant = c.complainant if c else "bob"
    parties = [c.complainant, *(p for p in TRADERS if p != c.complainant)][:2] if c else ["bob"]
    supervisors = [a for a in AGENTS if a == "sam"]
    fields: dict[str, Any] = {"complaint": ref}
    if name == "withdraw_complaint":
        fields["by"] = actor(r, complainant)
    elif name == "add_complaint_evidence":
        fields["by"] = actor(r, [*parties, *supervisors])
        fields["description"] = "more facts"
    else:
        fields["by"] = actor(r, supervisors)
    if name == "decide_complaint":
        fields["decision"] = pick(r, ("upheld", "upheld", "overturned", "overturned"))
        if (fields["decision"] == "overturned" and chance(r, 0.5)) or chance(r, 0.05):
            base = (
                world.orders[c.order].fiat_amount if c and c.order in world.orders else Decimal(5)
            )
            fields["compensation"] = amount_near(r, base / 2)
    return Step(name, fields)


def _lift(r: Random, world: World) -> Step:
    """CS lifts an active sanction (S1, S4, or early end of S2/S3)."""
    name = pick(r, sorted(n for n, t in world.traders.items() if not t.can_trade))
    kinds = sorted(world.traders[name].kinds)
    return Step(
        "lift_sanction",
        {"trader": name, "by": actor(r, list(AGENTS)), "kind": pick(r, kinds)},
    )


def _create_order(r: Random, world: World) -> Step:
    if world.orders and chance(r, 0.08):
        ref = pick(r, sorted(world.orders))  # duplicate_id
    else:
        world.created += 1
        ref = f"o{world.created}"
    seller = pick(r, TRADERS)
    buyer = pick(r, [t for t in TRADERS if t != seller])
    if chance(r, 0.05):
        buyer = seller  # O1: validation_error
    elif chance(r, 0.04):
        buyer = pick(r, [*AGENTS, "system"])  # an agent is never a party
    price = Decimal(pick(r, PRICES))
    fields: dict[str, Any] = {
        "order": ref,
        "seller": seller,
        "buyer": buyer,
        "asset": pick(r, ASSETS),
        "amount": pick(r, AMOUNTS) if not chance(r, 0.03) else "0",
        "price": str(price),
        "fiat": "EUR",
        "payment_method": "bank_transfer",
        "instant": chance(r, 0.4),
    }
    deviation = pick(r, DEVIATIONS)
    if deviation is not None:
        fields["reference_price"] = str(price * Decimal(deviation))
    return Step("create_order", fields)


def _command(
    r: Random,
    world: World,
    name: str,
    order: str | None = None,
    appeal: str | None = None,
) -> Step:
    if name == "apply_sanction":
        return _apply_sanction(r, world, appeal)
    if name == "lift_sanction":
        return Step(
            "lift_sanction",
            {
                "trader": pick(r, TRADERS),
                "by": actor(r, list(AGENTS)),
                "kind": pick(r, LIFTABLE),
            },
        )
    if name in ORDER_COMMANDS:
        return _order_command(r, world, name, order)
    if name in COMPLAINT_COMMANDS:
        return _complaint_command(r, world, name, None, appeal=appeal)
    return _appeal_command(r, world, name, appeal)


def _order_ref(r: Random, world: World, order: str | None) -> str:
    if order is not None:
        return order
    if not world.orders or chance(r, 0.04):
        return "nowhere"  # not_found
    return str(pick(r, sorted(world.orders)))


def _order_command(r: Random, world: World, name: str, order: str | None) -> Step:
    ref = _order_ref(r, world, order)
    o = world.orders.get(ref)
    buyer, seller = (o.buyer, o.seller) if o else ("bob", "alice")
    fields: dict[str, Any] = {"order": ref}
    if name == "mark_paid":
        fields["by"] = actor(r, buyer)
        if o is not None and chance(r, 0.4):
            fields["paid_amount"] = amount_near(r, o.fiat_amount)
    elif name == "cancel_order":
        fields["by"] = actor(r, buyer, 0.75)
    elif name == "release":
        fields["by"] = actor(r, seller)
    else:  # open_appeal
        by = actor(r, [buyer, seller], 0.9)
        own = BUYER_REASONS if by == buyer else SELLER_REASONS if by == seller else set()
        reasons = sorted(str(x) for x in own) if own and chance(r, 0.9) else list(REASONS)
        fields["by"] = by
        fields["reason"] = pick(r, reasons)
        if o is not None and o.state == "completed" and by == seller and chance(r, 0.4):
            fields["reason"] = "payment_reversed"  # C6: a chargeback after the release
        if world.appeals and chance(r, 0.05):
            fields["appeal"] = pick(r, sorted(world.appeals))  # duplicate_id
        else:
            world.opened += 1
            fields["appeal"] = f"a{world.opened}"
    return Step(name, fields)


def _appeal_ref(r: Random, world: World, appeal: str | None) -> str:
    if appeal is not None:
        return appeal
    if not world.appeals or chance(r, 0.04):
        return "nowhere"
    return str(pick(r, sorted(world.appeals)))


def _appeal_command(r: Random, world: World, name: str, appeal: str | None) -> Step:
    ref = _appeal_ref(r, world, appeal)
    a = world.appeals.get(ref)
    o = world.orders.get(a.order) if a else None
    buyer, seller = (o.buyer, o.seller) if o else ("bob", "alice")
    opener = a.opener if a else buyer
    agents = list(AGENTS)
    fields: dict[str, Any] = {"appeal": ref}
    who: dict[str, str | list[str]] = {
        "add_evidence": [buyer, seller, *agents],
        "cancel_appeal": opener,
        "start_review": agents,
        "request_refund": agents,
        "report_refund": seller,
        "confirm_refund": agents,
        "refuse_refund": seller,
        "request_payment_proof": agents,
        "submit_payment_proof": buyer,
        "agree_top_up": buyer,
        "refuse_top_up": buyer,
        "confirm_top_up": agents,
        "submit_freeze_proof": seller,
        "resolve_appeal": agents,
        "confirm_reversal": agents,
        "record_recovery": agents,
        "waive_clawback": agents,
    }
    fields["by"] = actor(r, who[name])
    paid = Decimal(0) if o is None else (o.paid_amount or o.fiat_amount)
    if name == "add_evidence":
        fields["description"] = "screenshot of the transfer"
        fields["refs"] = pick(r, [[], ["tx-1"], ["file-7", "tx-2"]])
    elif name == "request_refund":
        base = paid - o.fiat_amount if o and a and a.reason == "amount_mismatch" else paid
        fields["amount"] = amount_near(r, base if base > 0 else Decimal(5))
    elif name == "report_refund":
        requested = a.refunds[-1].amount if a and a.refunds else Decimal(5)
        fields["amount"] = amount_near(r, requested)
        fields["reference"] = "bank-ref-1"
    elif name == "confirm_top_up" and chance(r, 0.4):
        fields["amount"] = pick(r, ["5", "0.5", "0"])
    elif name in ("submit_payment_proof", "submit_freeze_proof"):
        fields["refs"] = ["proof-1"]
    elif name == "confirm_reversal":
        fields["amount"] = amount_near(r, o.amount if o else Decimal(5))
    elif name == "record_recovery":
        owed = (a.clawback or Decimal(5)) - a.recovered if a else Decimal(5)
        fields["amount"] = amount_near(r, owed if owed > 0 else Decimal(5))
    elif name == "resolve_appeal":
        terminal = o is not None and o.state in ("completed", "cancelled")
        outcomes: list[str | None] = [None] if terminal else ["release", "cancel", "cancel", None]
        outcome = pick(r, outcomes if chance(r, 0.9) else ["release", "cancel", None])
        if outcome is not None:
            fields["outcome"] = outcome
    return Step(name, fields)


def _apply_sanction(r: Random, world: World, appeal: str | None) -> Step:
    a = world.appeals.get(appeal) if appeal else None
    o = world.orders.get(a.order) if a else None
    traders = [o.buyer, o.seller] if o else list(TRADERS)
    fields: dict[str, Any] = {
        "trader": pick(r, traders if chance(r, 0.95) else list(AGENTS)),
        "by": actor(r, list(AGENTS)),
        "kind": pick(r, SANCTIONS),
    }
    if fields["kind"] == "partial_ban":
        fields["severity"] = pick(r, ["normal", "severe"])
    if appeal is not None:
        fields["appeal"] = appeal
    elif chance(r, 0.05):
        fields["appeal"] = "nowhere"
    return Step("apply_sanction", fields)
