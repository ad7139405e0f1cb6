"""The order stories: each walks one order through a path of rules.md, step by step.

A story is a generator of beats, so the driver can interleave thousands of them in simulated
time and keep only the ones in flight; each takes its branches from its own deal's random
stream, so a change to one story leaves the other stories' own choices as they were.
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Iterator
from datetime import timedelta
from decimal import Decimal
from typing import Any

from escrow.commands.simulation.deal import CENT, ZERO, Act, Beat, Deal, Settle

TICK_EVERY = timedelta(minutes=1)  # how often the simulated scheduler runs `tick`


def _m(minutes: float) -> timedelta:
    return timedelta(minutes=minutes)


def _h(hours: float) -> timedelta:
    return timedelta(hours=hours)


def _d(days: float) -> timedelta:
    return timedelta(days=days)


# --- steps shared by stories ----------------------------------------------------------------


def _create(d: Deal, expect: str | None = None) -> Act:
    fields: dict[str, Any] = {
        "order": d.ref,
        "seller": d.seller,
        "buyer": d.buyer,
        "asset": d.asset,
        "amount": str(d.amount),
        "price": str(d.price),
        "fiat": d.fiat,
        "payment_method": d.method,
        "instant": d.instant,
    }
    if d.reference_price is not None:
        fields["reference_price"] = str(d.reference_price)
    return Act(ZERO, "create_order", fields, expect=expect)


def _pay(d: Deal, paid: Decimal | None = None) -> Act:
    fields: dict[str, Any] = {"order": d.ref, "by": d.buyer}
    if paid is not None:
        fields["paid_amount"] = str(paid)
    return Act(d.within(_m(1), _m(10)), "mark_paid", fields)


def _on(after: timedelta, command: str, appeal: str, by: str, **more: Any) -> Act:
    return Act(after, command, {"appeal": appeal, "by": by, **more})


def _open(d: Deal, by: str, reason: str, after: timedelta | None = None) -> tuple[str, Act]:
    ref = d.new_appeal()
    fields = {"order": d.ref, "by": by, "reason": reason, "appeal": ref}
    return ref, Act(after or d.within(_m(15), _h(3)), "open_appeal", fields)


def _review(d: Deal, appeal: str) -> Act:
    return _on(d.within(_m(5), _h(8)), "start_review", appeal, d.agent)


def _resolve(d: Deal, appeal: str, outcome: str | None, expect: str | None = None) -> Act:
    more = {"outcome": outcome} if outcome else {}
    act = _on(d.within(_m(5), _h(4)), "resolve_appeal", appeal, d.agent, **more)
    return Act(act.after, act.command, act.fields, expect=expect)


def _lift(d: Deal, trader: str, kind: str, low: timedelta, high: timedelta) -> Act:
    fields = {"trader": trader, "by": d.agent, "kind": kind}
    return Act(d.within(low, high), "lift_sanction", fields, tolerate=frozenset({"invalid_state"}))


def _refund(d: Deal, appeal: str, amount: Decimal, refuse_share: float) -> Iterator[Beat]:
    """R1: CS asks, the seller reports and CS confirms, or the seller refuses (S1, lifted later)."""
    yield _on(d.within(_m(5), _h(2)), "request_refund", appeal, d.agent, amount=str(amount))
    if d.chance(refuse_share):
        yield _on(d.within(_m(30), _h(12)), "refuse_refund", appeal, d.seller)
        return
    reported = amount if d.chance(0.9) else max(amount - CENT, CENT)
    yield _on(
        d.within(_m(30), _h(12)),
        "report_refund",
        appeal,
        d.seller,
        amount=str(reported),
        reference=f"bank-{d.ref}",
    )
    yield _on(d.within(_m(10), _h(6)), "confirm_refund", appeal, d.agent)


def _refund_then_lift(
    d: Deal, appeal: str, amount: Decimal, refuse_share: float
) -> Generator[Beat, None, bool]:
    """`_refund`, telling the story whether the seller refused (then S1 is lifted later)."""
    refused = False
    for beat in _refund(d, appeal, amount, refuse_share):
        refused = refused or (isinstance(beat, Act) and beat.command == "refuse_refund")
        yield beat
    return refused


def _complain(d: Deal, appeal: str, party: str, share: float = 0.05) -> Iterator[Beat]:
    """E1–E6: now and then a party takes a resolved appeal further; a supervisor who did not
    resolve it reviews it, mostly upholds, sometimes overturns with a compensation."""
    if d.supervisor is None or not d.chance(share):
        return
    ref = f"{appeal}-k1"
    fields = {"complaint": ref, "appeal": appeal, "by": party, "statement": "I disagree"}
    yield Act(d.within(_h(2), _d(10)), "file_complaint", fields)
    if d.chance(0.1):
        yield Act(d.within(_h(1), _d(2)), "withdraw_complaint", {"complaint": ref, "by": party})
        return
    review = {"complaint": ref, "by": d.supervisor}
    yield Act(d.within(_h(4), _d(20)), "start_complaint_review", review)  # E5 may fire first
    if d.chance(0.2):
        compensation = str(max((d.fiat_amount / 20).quantize(CENT), CENT))
        decision = {"decision": "overturned", "compensation": compensation}
    else:
        decision = {"decision": "upheld"}
    yield Act(d.within(_h(1), _d(3)), "decide_complaint", {**review, **decision})


def _payment_reversed(d: Deal) -> Iterator[Beat]:
    """C6, K1–K5: the buyer's payment is charged back after the release."""
    appeal, act = _open(d, d.seller, "payment_reversed", d.within(_d(1), _d(30)))
    yield act
    yield _review(d, appeal)
    yield _on(_h(1), "add_evidence", appeal, d.seller, description="chargeback notice")
    if d.chance(0.2):  # K5: no reversal after all
        yield _resolve(d, appeal, None)
        yield from _complain(d, appeal, d.seller, 0.2)
        return
    yield _on(d.within(_m(30), _d(1)), "confirm_reversal", appeal, d.agent, amount=str(d.amount))
    first = (d.amount / 2).quantize(d.amount) if d.chance(0.6) else Decimal(0)
    if first > 0:
        yield _on(d.within(_h(1), _d(5)), "record_recovery", appeal, d.agent, amount=str(first))
    yield _resolve(d, appeal, None)
    if d.chance(0.1):  # K3: the bank reinstated the payment
        yield _on(d.within(_d(1), _d(20)), "waive_clawback", appeal, d.agent)
        yield _lift(d, d.buyer, "permanent_suspension", _h(1), _d(2))
    elif d.chance(0.7):  # K2: the rest comes back from a later deposit
        rest = str(d.amount - first)
        yield _on(d.within(_d(1), _d(20)), "record_recovery", appeal, d.agent, amount=rest)
    yield from _complain(d, appeal, d.buyer, 0.3)


# --- stories --------------------------------------------------------------------------------


def completed(d: Deal) -> Iterator[Beat]:
    yield _create(d)
    yield _pay(d)
    if d.chance(0.03):  # O6: only the seller releases
        yield Act(_m(1), "release", {"order": d.ref, "by": d.buyer}, expect="not_authorized")
    yield Act(d.within(_m(1), _m(30)), "release", {"order": d.ref, "by": d.seller})
    if d.chance(0.06):  # A2: an appeal after the order closed changes nothing in it
        appeal, act = _open(d, d.buyer, "seller_payment_method_problem", d.within(_h(1), _d(3)))
        yield act
        yield _review(d, appeal)
        yield _on(_m(30), "add_evidence", appeal, d.buyer, description="bank statement")
        yield _resolve(d, appeal, None)
    elif d.chance(0.01):  # a card or bank chargeback after the release: rare
        yield from _payment_reversed(d)
    yield Settle()


def expired(d: Deal) -> Iterator[Beat]:
    yield _create(d)
    if d.chance(0.25):  # O2: paying after the deadline is refused
        late = Act(
            d.payment_window + d.within(ZERO, _m(30)),
            "mark_paid",
            {"order": d.ref, "by": d.buyer},
            expect="deadline_passed",
        )
        yield late
        yield Settle(TICK_EVERY * 2)
    else:
        yield Settle(d.payment_window + TICK_EVERY * 2)


def cancelled(d: Deal) -> Iterator[Beat]:
    yield _create(d)
    if d.chance(0.5):
        yield _pay(d)
    yield Act(d.within(_m(1), _m(10)), "cancel_order", {"order": d.ref, "by": d.buyer})
    if d.chance(0.2):  # terminal states are final
        yield Act(_m(5), "release", {"order": d.ref, "by": d.seller}, expect="invalid_state")
    yield Settle()


def seller_not_releasing(d: Deal) -> Iterator[Beat]:
    """B1, and B1a when the price deviates from the reference price."""
    deviates = d.chance(0.3)
    if deviates:
        d.reference_price = d.price * Decimal("0.8")
    yield _create(d)
    yield _pay(d)
    appeal, act = _open(d, d.buyer, "seller_not_releasing")
    yield act
    if d.chance(0.3):  # A5
        release = {"order": d.ref, "by": d.seller}
        yield Act(_m(5), "release", release, expect="release_blocked_by_appeal")
    yield _on(d.within(_m(1), _h(1)), "add_evidence", appeal, d.buyer, description="receipt")
    yield _review(d, appeal)
    if not deviates:
        yield _resolve(d, appeal, "release")
        if d.chance(0.2):  # A3: the same issue cannot be appealed again
            fields = {
                "order": d.ref,
                "by": d.buyer,
                "reason": "seller_not_releasing",
                "appeal": f"{d.ref}-again",
            }
            yield Act(_h(2), "open_appeal", fields, expect="issue_already_resolved")
        yield from _complain(d, appeal, d.seller)
        yield Settle()
        return
    yield _resolve(d, appeal, "release", expect="price_deviation")
    refused = yield from _refund_then_lift(d, appeal, d.fiat_amount, 0.25)
    yield _resolve(d, appeal, "cancel")
    if refused:
        yield _lift(d, d.seller, "p2p_suspension", _d(1), _d(7))
    yield Settle()


def cancelled_after_payment(d: Deal) -> Iterator[Beat]:
    """B2: cancelled by mistake after paying; the seller refunds, or is suspended (S1)."""
    yield _create(d)
    yield _pay(d)
    yield Act(d.within(_m(1), _m(10)), "cancel_order", {"order": d.ref, "by": d.buyer})
    appeal, act = _open(d, d.buyer, "cancelled_after_payment", d.within(_m(10), _d(1)))
    yield act
    yield _review(d, appeal)
    refused = yield from _refund_then_lift(d, appeal, d.fiat_amount, 0.3)
    yield _resolve(d, appeal, None)
    if refused:
        yield _lift(d, d.seller, "p2p_suspension", _d(1), _d(7))
    yield Settle()


def amount_mismatch(d: Deal) -> Iterator[Beat]:
    """B3: the buyer overpaid; the refund is at most the overpayment (R3)."""
    extra = d.share(d.fiat_amount, 5, 50)
    yield _create(d)
    yield _pay(d, d.fiat_amount + extra)
    appeal, act = _open(d, d.buyer, "amount_mismatch")
    yield act
    yield _review(d, appeal)
    if d.chance(0.25):
        too_much = str(extra + 1)
        yield Act(
            _m(10),
            "request_refund",
            {"appeal": appeal, "by": d.agent, "amount": too_much},
            expect="amount_exceeds_limit",
        )
    amount = extra if d.chance(0.6) else max((extra / 2).quantize(CENT), CENT)
    refused = yield from _refund_then_lift(d, appeal, amount, 0.15)
    yield _resolve(d, appeal, "release")
    if refused:
        yield _lift(d, d.seller, "p2p_suspension", _d(1), _d(7))
    yield Settle()


def seller_payment_method_problem(d: Deal) -> Iterator[Beat]:
    """B4: after verification CS cancels."""
    yield _create(d)
    yield _pay(d)
    appeal, act = _open(d, d.buyer, "seller_payment_method_problem")
    yield act
    yield _review(d, appeal)
    yield _resolve(d, appeal, "cancel")
    yield Settle()


def _verbal_abuse(d: Deal, reporter: str, offender: str) -> Iterator[Beat]:
    """B5/C5: a partial ban on the offender; the order goes back to paid and is released."""
    yield _create(d)
    yield _pay(d)
    appeal, act = _open(d, reporter, "verbal_abuse")
    yield act
    if d.chance(0.05):  # A9: only the opener withdraws an appeal
        yield Act(
            _m(1),
            "cancel_appeal",
            {"appeal": appeal, "by": offender},
            expect="not_authorized",
        )
    if d.chance(0.3):  # A4: withdrawn, then opened again on the same issue
        yield _on(d.within(_m(5), _h(1)), "cancel_appeal", appeal, reporter)
        appeal, act = _open(d, reporter, "verbal_abuse", d.within(_m(10), _h(2)))
        yield act
    yield _review(d, appeal)
    severity = "severe" if d.chance(0.2) else "normal"
    yield Act(
        _m(10),
        "apply_sanction",
        {
            "trader": offender,
            "by": d.agent,
            "kind": "partial_ban",
            "severity": severity,
            "appeal": appeal,
        },
    )
    yield _resolve(d, appeal, None)
    yield Act(d.within(_m(1), _m(30)), "release", {"order": d.ref, "by": d.seller})
    yield from _complain(d, appeal, offender)
    yield Settle()


def buyer_verbal_abuse(d: Deal) -> Iterator[Beat]:
    yield from _verbal_abuse(d, d.buyer, d.seller)


def seller_verbal_abuse(d: Deal) -> Iterator[Beat]:
    yield from _verbal_abuse(d, d.seller, d.buyer)


def payment_not_received(d: Deal) -> Iterator[Beat]:
    """C1: proof within 2 days, or the deadline cancels; instant methods are decided directly."""
    yield _create(d)
    yield _pay(d)
    appeal, act = _open(d, d.seller, "payment_not_received")
    yield act
    yield _review(d, appeal)
    if d.instant:
        if d.chance(0.2):
            yield Act(
                _m(5),
                "request_payment_proof",
                {"appeal": appeal, "by": d.agent},
                expect="invalid_state",
            )
        yield _resolve(d, appeal, "release" if d.chance(0.6) else "cancel")
        yield Settle()
        return
    yield _on(d.within(_m(5), _h(2)), "request_payment_proof", appeal, d.agent)
    if d.chance(0.5):
        yield _on(d.within(_h(1), _h(40)), "submit_payment_proof", appeal, d.buyer, refs=["tx"])
        yield _resolve(d, appeal, "release")
        yield Settle()
        return
    late = _d(2) + TICK_EVERY * 2
    if d.chance(0.3):
        yield Act(
            late,
            "submit_payment_proof",
            {"appeal": appeal, "by": d.buyer},
            expect="deadline_passed",
        )
        yield Settle(TICK_EVERY)
    else:
        yield Settle(late)


def insufficient_payment(d: Deal) -> Iterator[Beat]:
    """C2: the buyer tops up (then release), or refuses (refund less fees, then cancel)."""
    shortfall = d.share(d.fiat_amount, 5, 30)
    paid = max(d.fiat_amount - shortfall, CENT)
    yield _create(d)
    yield _pay(d, paid)
    appeal, act = _open(d, d.seller, "insufficient_payment")
    yield act
    yield _review(d, appeal)
    roll = d.rng.random()
    if roll < 0.5:
        yield _on(d.within(_m(5), _h(2)), "agree_top_up", appeal, d.buyer)
        yield _on(d.within(_m(30), _h(12)), "confirm_top_up", appeal, d.agent)
        yield _resolve(d, appeal, "release")
    elif roll < 0.85:
        yield _on(d.within(_m(5), _h(2)), "refuse_top_up", appeal, d.buyer)
        if d.chance(0.2):  # R2: the refund comes first
            yield _resolve(d, appeal, "cancel", expect="refund_pending")
        fee = min(Decimal(1), (paid / 10).quantize(CENT))
        refund = paid - fee if paid - fee > 0 else paid
        refused = yield from _refund_then_lift(d, appeal, refund, 0.15)
        yield _resolve(d, appeal, "cancel")
        if refused:
            yield _lift(d, d.seller, "p2p_suspension", _d(1), _d(7))
    else:  # the seller accepts the shortfall
        yield _resolve(d, appeal, "release")
    yield Settle()


def non_real_name_payment(d: Deal) -> Iterator[Beat]:
    """C3: the seller accepts (release) or refuses the payment (refund, then cancel)."""
    yield _create(d)
    yield _pay(d)
    appeal, act = _open(d, d.seller, "non_real_name_payment")
    yield act
    yield _review(d, appeal)
    accepts = d.chance(0.5)
    answer = "I accept this payment" if accepts else "I do not accept a third-party payment"
    yield _on(d.within(_m(10), _h(6)), "add_evidence", appeal, d.seller, description=answer)
    if accepts:
        yield _resolve(d, appeal, "release")
        yield Settle()
        return
    if d.chance(0.3):
        yield _resolve(d, appeal, "cancel", expect="refund_pending")
    refused = yield from _refund_then_lift(d, appeal, d.fiat_amount, 0.15)
    yield _resolve(d, appeal, "cancel")
    if refused:
        yield _lift(d, d.seller, "p2p_suspension", _d(1), _d(7))
    yield Settle()


def bank_account_frozen(d: Deal) -> Iterator[Beat]:
    """C4: the buyer is suspended 24 h (S2); proof within 24 h, or the window closes by itself;
    a buyer who does not cooperate is suspended for good (S4), sometimes lifted after review."""
    yield _create(d)
    yield _pay(d)
    appeal, act = _open(d, d.seller, "bank_account_frozen")
    yield act
    if d.chance(0.5):
        yield _on(d.within(_h(1), _h(20)), "submit_freeze_proof", appeal, d.seller, refs=["freeze"])
        if d.chance(0.5):
            yield _on(_h(2), "add_evidence", appeal, d.buyer, description="source of funds")
            yield _resolve(d, appeal, "release")
        else:
            yield Act(
                _d(1),
                "apply_sanction",
                {
                    "trader": d.buyer,
                    "by": d.agent,
                    "kind": "permanent_suspension",
                    "appeal": appeal,
                },
                tolerate=frozenset({"invalid_state"}),
            )
            yield _resolve(d, appeal, "cancel")
            if d.chance(0.3):
                yield _lift(d, d.buyer, "permanent_suspension", _d(7), _d(30))
        yield Settle()
        return
    window = _h(24) + TICK_EVERY * 2
    if d.chance(0.2):
        yield Act(
            window,
            "submit_freeze_proof",
            {"appeal": appeal, "by": d.seller},
            expect="deadline_passed",
            after_deadline=True,
        )
    else:
        yield Act(
            window,
            "add_evidence",
            {"appeal": appeal, "by": d.agent, "description": "no proof within 24 h"},
            after_deadline=True,
        )
    yield _resolve(d, appeal, "release")
    yield Settle()


Story = Callable[[Deal], Iterator[Beat]]
APPEAL_STORIES: tuple[Story, ...] = (
    seller_not_releasing,
    cancelled_after_payment,
    amount_mismatch,
    seller_payment_method_problem,
    buyer_verbal_abuse,
    payment_not_received,
    insufficient_payment,
    non_real_name_payment,
    bank_account_frozen,
    seller_verbal_abuse,
)
# The mix: (story, weight in percent); appealed orders share 33 %.
MIX: tuple[tuple[Story, float], ...] = (
    (completed, 50.0),
    (expired, 8.0),
    (cancelled, 7.0),
    *((story, 3.3) for story in APPEAL_STORIES),
)


def suspended_attempt(d: Deal) -> Iterator[Beat]:
    """O7: a sanctioned trader cannot be party to a new order."""
    d.exists = False
    yield _create(d, expect="trader_suspended")
    yield Settle()
