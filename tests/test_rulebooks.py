"""Every transition declared in the ORDER, APPEAL and COMPLAINT rulebooks is reached by a real
command.

The cases are taken from the tables themselves (`rulebook.steps`): for each declared
(trigger, source) pair a real engine is driven into the source state with real commands, the
command that causes the trigger is issued (or the clock moved and `tick` run, for the system's
deadlines), and the state must land in the declared destination, with the declared rule on the
event recorded. A transition added to a table without a command that reaches it has no case
here, and its test fails. The diagram command is checked against the same tables.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import pytest
from click.testing import CliRunner

from escrow.clock import ManualClock
from escrow.commands.api import Escrow
from escrow.commands.cli.main import main
from escrow.durations import parse_duration
from escrow.machines import APPEAL, COMPLAINT, ORDER
from escrow.rulebook import Rulebook
from escrow.views import Recorded
from escrow.vocabulary import AppealState, ComplaintState, OrderState
from tests.helpers import order_fields

BOOKS: dict[str, Rulebook] = {"order": ORDER, "appeal": APPEAL, "complaint": COMPLAINT}

# A step of a script: a command and its fields, or ("wait", duration) = advance then tick.
Action = tuple[str, dict[str, Any]] | tuple[str, str]


def cmd(name: str, **fields: Any) -> tuple[str, dict[str, Any]]:
    return (name, fields)


def wait(duration: str) -> tuple[str, str]:
    return ("wait", duration)


# --- the ways into each state, from a fresh store ------------------------------------------

CREATED = (cmd("create_order", **order_fields("o1")),)
CREATED_SLOW = (cmd("create_order", **order_fields("o1", instant=False)),)
PAID = (*CREATED, cmd("mark_paid", order="o1", by="bob"))
PAID_SLOW = (*CREATED_SLOW, cmd("mark_paid", order="o1", by="bob"))
SHORT = (*CREATED, cmd("mark_paid", order="o1", by="bob", paid_amount="400"))
COMPLETED = (*PAID, cmd("release", order="o1", by="alice"))
COMPLETED_SLOW = (*PAID_SLOW, cmd("release", order="o1", by="alice"))
CANCELLED = (*PAID, cmd("cancel_order", order="o1", by="bob"))


def opened(base: tuple[Action, ...], by: str, reason: str) -> tuple[Action, ...]:
    return (*base, cmd("open_appeal", order="o1", by=by, reason=reason, appeal="a1"))


def reviewed(base: tuple[Action, ...], by: str, reason: str) -> tuple[Action, ...]:
    return (*opened(base, by, reason), cmd("start_review", appeal="a1", by="carol"))


B1_OPEN = opened(PAID, "bob", "seller_not_releasing")
B1_REVIEW = reviewed(PAID, "bob", "seller_not_releasing")
AWAITING_REFUND = (*B1_REVIEW, cmd("request_refund", appeal="a1", by="carol", amount="100"))
C1_REVIEW = reviewed(PAID_SLOW, "alice", "payment_not_received")
AWAITING_PROOF = (*C1_REVIEW, cmd("request_payment_proof", appeal="a1", by="carol"))
C2_REVIEW = reviewed(SHORT, "alice", "insufficient_payment")
AWAITING_TOP_UP = (*C2_REVIEW, cmd("agree_top_up", appeal="a1", by="bob"))
AWAITING_FREEZE = opened(PAID, "alice", "bank_account_frozen")
C6_REVIEW = reviewed(COMPLETED, "alice", "payment_reversed")
CLAWBACK = (*C6_REVIEW, cmd("confirm_reversal", appeal="a1", by="carol", amount="500"))
CLAWBACK_RESOLVED = (*CLAWBACK, cmd("resolve_appeal", appeal="a1", by="carol"))
B1_RESOLVED = (*B1_REVIEW, cmd("resolve_appeal", appeal="a1", by="carol", outcome="release"))
FILED = (
    *B1_RESOLVED,
    cmd("file_complaint", complaint="k1", appeal="a1", by="alice", statement="never paid"),
)
COMPLAINT_REVIEW = (*FILED, cmd("start_complaint_review", complaint="k1", by="sam"))
LIVE_COMPLAINTS = {ComplaintState.FILED: FILED, ComplaintState.UNDER_REVIEW: COMPLAINT_REVIEW}

# Each live appeal state, with the script that reaches it and the trader who opened it.
LIVE_APPEALS: dict[str, tuple[tuple[Action, ...], str]] = {
    AppealState.OPEN: (B1_OPEN, "bob"),
    AppealState.UNDER_REVIEW: (B1_REVIEW, "bob"),
    AppealState.AWAITING_REFUND: (AWAITING_REFUND, "bob"),
    AppealState.AWAITING_PAYMENT_PROOF: (AWAITING_PROOF, "alice"),
    AppealState.AWAITING_TOP_UP: (AWAITING_TOP_UP, "alice"),
    AppealState.AWAITING_FREEZE_PROOF: (AWAITING_FREEZE, "alice"),
}


@dataclass(frozen=True)
class Case:
    """How one declared transition is reached: the way into the source, then the act."""

    setup: tuple[Action, ...]
    act: Action
    note: str = ""


ORDER_CASES: dict[tuple[str, str], list[Case]] = {
    ("mark_paid", OrderState.AWAITING_PAYMENT): [
        Case(CREATED, cmd("mark_paid", order="o1", by="bob"))
    ],
    ("expire_payment_window", OrderState.AWAITING_PAYMENT): [Case(CREATED, wait("15m"))],
    ("cancel_order", OrderState.AWAITING_PAYMENT): [
        Case(CREATED, cmd("cancel_order", order="o1", by="bob"))
    ],
    ("cancel_order", OrderState.PAID): [Case(PAID, cmd("cancel_order", order="o1", by="bob"))],
    ("release", OrderState.PAID): [Case(PAID, cmd("release", order="o1", by="alice"))],
    ("open_appeal", OrderState.PAID): [Case(PAID, B1_OPEN[-1])],
    ("open_appeal", OrderState.COMPLETED): [
        Case(COMPLETED, opened((), "bob", "seller_not_releasing")[0])
    ],
    ("open_appeal", OrderState.CANCELLED): [
        Case(CANCELLED, opened((), "bob", "cancelled_after_payment")[0])
    ],
    ("appeal_cancelled", OrderState.IN_APPEAL): [
        Case(B1_OPEN, cmd("cancel_appeal", appeal="a1", by="bob"))
    ],
    ("appeal_cancelled", OrderState.COMPLETED): [
        Case(
            opened(COMPLETED, "alice", "payment_not_received"),
            cmd("cancel_appeal", appeal="a1", by="alice"),
        )
    ],
    ("appeal_cancelled", OrderState.CANCELLED): [
        Case(
            opened(CANCELLED, "bob", "cancelled_after_payment"),
            cmd("cancel_appeal", appeal="a1", by="bob"),
        )
    ],
    ("resolved_release", OrderState.IN_APPEAL): [
        Case(B1_REVIEW, cmd("resolve_appeal", appeal="a1", by="carol", outcome="release"))
    ],
    ("resolved_cancel", OrderState.IN_APPEAL): [
        Case(B1_REVIEW, cmd("resolve_appeal", appeal="a1", by="carol", outcome="cancel"), "agent"),
        Case(AWAITING_PROOF, wait("2d"), "system: C1 proof deadline"),
    ],
    ("resolved_none", OrderState.IN_APPEAL): [
        Case(
            reviewed(PAID, "bob", "verbal_abuse"),
            cmd("resolve_appeal", appeal="a1", by="carol"),
        )
    ],
    ("resolved_none", OrderState.COMPLETED): [
        Case(
            reviewed(COMPLETED, "bob", "seller_not_releasing"),
            cmd("resolve_appeal", appeal="a1", by="carol"),
            "agent",
        ),
        Case(
            (
                *reviewed(COMPLETED_SLOW, "alice", "payment_not_received"),
                cmd("request_payment_proof", appeal="a1", by="carol"),
            ),
            wait("2d"),
            "system: C1 proof deadline",
        ),
    ],
    ("resolved_none", OrderState.CANCELLED): [
        Case(
            reviewed(CANCELLED, "bob", "cancelled_after_payment"),
            cmd("resolve_appeal", appeal="a1", by="carol"),
        )
    ],
    ("top_up_confirmed", OrderState.IN_APPEAL): [
        Case(AWAITING_TOP_UP, cmd("confirm_top_up", appeal="a1", by="carol"))
    ],
    ("top_up_confirmed", OrderState.COMPLETED): [
        Case(
            (
                *reviewed(
                    (*SHORT, cmd("release", order="o1", by="alice")),
                    "alice",
                    "insufficient_payment",
                ),
                cmd("agree_top_up", appeal="a1", by="bob"),
            ),
            cmd("confirm_top_up", appeal="a1", by="carol", amount="60"),
        )
    ],
    ("top_up_confirmed", OrderState.CANCELLED): [
        Case(
            (
                *reviewed(
                    (*SHORT, cmd("cancel_order", order="o1", by="bob")),
                    "alice",
                    "insufficient_payment",
                ),
                cmd("agree_top_up", appeal="a1", by="bob"),
            ),
            cmd("confirm_top_up", appeal="a1", by="carol"),
        )
    ],
}

APPEAL_CASES: dict[tuple[str, str], list[Case]] = {
    ("start_review", AppealState.OPEN): [
        Case(B1_OPEN, cmd("start_review", appeal="a1", by="carol"))
    ],
    **{
        ("add_evidence", state): [
            Case(setup, cmd("add_evidence", appeal="a1", by="carol", description="checked"))
        ]
        for state, (setup, _) in LIVE_APPEALS.items()
    },
    **{
        ("cancel_appeal", state): [Case(setup, cmd("cancel_appeal", appeal="a1", by=opener))]
        for state, (setup, opener) in LIVE_APPEALS.items()
    },
    ("request_refund", AppealState.UNDER_REVIEW): [Case(B1_REVIEW, AWAITING_REFUND[-1])],
    ("report_refund", AppealState.AWAITING_REFUND): [
        Case(AWAITING_REFUND, cmd("report_refund", appeal="a1", by="alice", amount="100"))
    ],
    ("confirm_refund", AppealState.AWAITING_REFUND): [
        Case(AWAITING_REFUND, cmd("confirm_refund", appeal="a1", by="carol"))
    ],
    ("refuse_refund", AppealState.AWAITING_REFUND): [
        Case(AWAITING_REFUND, cmd("refuse_refund", appeal="a1", by="alice"))
    ],
    ("request_payment_proof", AppealState.UNDER_REVIEW): [Case(C1_REVIEW, AWAITING_PROOF[-1])],
    ("submit_payment_proof", AppealState.AWAITING_PAYMENT_PROOF): [
        Case(AWAITING_PROOF, cmd("submit_payment_proof", appeal="a1", by="bob"))
    ],
    ("expire_payment_proof", AppealState.AWAITING_PAYMENT_PROOF): [
        Case(AWAITING_PROOF, wait("2d"))
    ],
    ("agree_top_up", AppealState.UNDER_REVIEW): [Case(C2_REVIEW, AWAITING_TOP_UP[-1])],
    ("refuse_top_up", AppealState.UNDER_REVIEW): [
        Case(C2_REVIEW, cmd("refuse_top_up", appeal="a1", by="bob"))
    ],
    ("refuse_top_up", AppealState.AWAITING_TOP_UP): [
        Case(AWAITING_TOP_UP, cmd("refuse_top_up", appeal="a1", by="bob"))
    ],
    ("confirm_top_up", AppealState.AWAITING_TOP_UP): [
        Case(AWAITING_TOP_UP, cmd("confirm_top_up", appeal="a1", by="carol"))
    ],
    ("submit_freeze_proof", AppealState.AWAITING_FREEZE_PROOF): [
        Case(AWAITING_FREEZE, cmd("submit_freeze_proof", appeal="a1", by="alice"))
    ],
    ("close_freeze_window", AppealState.AWAITING_FREEZE_PROOF): [
        Case(AWAITING_FREEZE, wait("24h"))
    ],
    ("resolve_appeal", AppealState.UNDER_REVIEW): [
        Case(B1_REVIEW, cmd("resolve_appeal", appeal="a1", by="carol", outcome="release")),
        Case(B1_REVIEW, cmd("resolve_appeal", appeal="a1", by="carol", outcome="cancel")),
        Case(
            reviewed(PAID, "alice", "verbal_abuse"), cmd("resolve_appeal", appeal="a1", by="carol")
        ),
    ],
}

APPEAL_CASES.update(
    {
        ("confirm_reversal", AppealState.UNDER_REVIEW): [Case(C6_REVIEW, CLAWBACK[-1])],
        **{
            (trigger, state): [Case(setup, cmd(trigger, appeal="a1", by="carol", **more))]
            for trigger, more in (("record_recovery", {"amount": "100"}), ("waive_clawback", {}))
            for state, setup in (
                (AppealState.UNDER_REVIEW, CLAWBACK),
                (AppealState.RESOLVED, CLAWBACK_RESOLVED),
            )
        },
        ("file_complaint", AppealState.RESOLVED): [Case(B1_RESOLVED, FILED[-1])],
        ("complaint_closed", AppealState.RESOLVED): [
            Case(FILED, cmd("withdraw_complaint", complaint="k1", by="alice"), "withdrawn"),
            Case(
                COMPLAINT_REVIEW,
                cmd("decide_complaint", complaint="k1", by="sam", decision="upheld"),
                "decided",
            ),
        ],
    }
)

COMPLAINT_CASES: dict[tuple[str, str], list[Case]] = {
    ("start_complaint_review", ComplaintState.FILED): [Case(FILED, COMPLAINT_REVIEW[-1])],
    ("decide_upheld", ComplaintState.UNDER_REVIEW): [
        Case(COMPLAINT_REVIEW, cmd("decide_complaint", complaint="k1", by="sam", decision="upheld"))
    ],
    ("decide_overturned", ComplaintState.UNDER_REVIEW): [
        Case(
            COMPLAINT_REVIEW,
            cmd(
                "decide_complaint",
                complaint="k1",
                by="sam",
                decision="overturned",
                compensation="10",
            ),
        )
    ],
    **{
        (trigger, state): [Case(setup, action)]
        for state, setup in LIVE_COMPLAINTS.items()
        for trigger, action in (
            ("withdraw_complaint", cmd("withdraw_complaint", complaint="k1", by="alice")),
            (
                "add_complaint_evidence",
                cmd("add_complaint_evidence", complaint="k1", by="bob", description="receipt"),
            ),
            ("mark_overdue", wait("15d")),
        )
    },
}

CASES: dict[str, dict[tuple[str, str], list[Case]]] = {
    "order": ORDER_CASES,
    "appeal": APPEAL_CASES,
    "complaint": COMPLAINT_CASES,
}
SUBJECT = {"order": "o1", "appeal": "a1", "complaint": "k1"}


def declared() -> list[tuple[str, str, str]]:
    """(rulebook, trigger, source) for every transition the tables declare."""
    return [
        (name, step.trigger, source)
        for name, book in BOOKS.items()
        for step in book.steps
        for source in step.sources
    ]


def step_of(book: Rulebook, trigger: str, source: str) -> Any:
    matches = [s for s in book.steps if s.trigger == trigger and source in s.sources]
    assert len(matches) == 1, f"{book.name}: {trigger} from {source} is declared {len(matches)}x"
    return matches[0]


def perform(engine: Escrow, clock: ManualClock, action: Action) -> list[Recorded]:
    name, arg = action
    if name == "wait":
        assert isinstance(arg, str)
        clock.advance(parse_duration(arg))
        return [r for outcome in engine.tick() for r in outcome.recorded]
    assert isinstance(arg, dict)
    return list(engine.run(name, arg).recorded)


def state_of(engine: Escrow, kind: str) -> str:
    if kind == "complaint":
        return engine.complaint("k1").state
    return engine.order("o1").state if kind == "order" else engine.appeal("a1").state


def case_params() -> list[Any]:
    """One test per case of each declared transition; a transition with no case still gets
    one, which fails."""
    params = []
    for kind, trigger, source in declared():
        count = max(1, len(CASES[kind].get((trigger, source), [])))
        params += [
            pytest.param(kind, trigger, source, n, id=f"{kind}:{trigger}:{source}:{n}")
            for n in range(count)
        ]
    return params


@pytest.mark.parametrize(("kind", "trigger", "source", "number"), case_params())
def test_declared_transition_is_reached_by_a_command(
    engine: Escrow, clock: ManualClock, kind: str, trigger: str, source: str, number: int
) -> None:
    cases = CASES[kind].get((trigger, source))
    if not cases:
        pytest.fail(f"{kind} rulebook: no command is known to reach {trigger} from {source}")
    step = step_of(BOOKS[kind], trigger, source)
    case = cases[number]
    for action in case.setup:
        perform(engine, clock, action)
    assert state_of(engine, kind) == source, f"the setup did not reach {source} {case.note}"

    recorded = perform(engine, clock, case.act)

    assert state_of(engine, kind) == step.dest_from(source), case.note
    rules = {(r.stream, r.rule) for r in recorded if r.ref == SUBJECT[kind]}
    assert (kind, step.rule) in rules, f"no {kind} event under rule {step.rule} {case.note}"


def test_every_case_names_a_declared_transition() -> None:
    """A case left over after a transition was removed from a table is a mistake too."""
    known = set(declared())
    stale = [
        (kind, t, s)
        for kind, cases in CASES.items()
        for (t, s) in cases
        if (kind, t, s) not in known
    ]
    assert stale == []


def test_rulebooks_use_the_states_of_rules_md() -> None:
    assert set(ORDER.states) == {s.value for s in OrderState}
    assert set(APPEAL.states) == {s.value for s in AppealState}
    assert set(COMPLAINT.states) == {s.value for s in ComplaintState}
    reached = {
        kind: {book.machine.initial}
        | {step.dest_from(src) for step in book.steps for src in step.sources}
        for kind, book in BOOKS.items()
    }
    for kind, book in BOOKS.items():
        assert reached[kind] == set(book.states), kind


# --- the diagram --------------------------------------------------------------------------

STATE = r"[a-z][a-z_]*"
LINE = re.compile(
    rf"^stateDiagram-v2$"
    rf"|^    \[\*\] --> (?P<initial>{STATE})$"
    rf"|^    (?P<src>{STATE}) --> (?P<dest>{STATE}): (?P<label>[^:\n]+)$"
    rf"|^    (?P<final>{STATE}) --> \[\*\]$"
)


def parse_mermaid(block: str) -> tuple[str, set[tuple[str, str, str]], set[str]]:
    """A strict reading of the subset of Mermaid stateDiagram-v2 the command prints."""
    lines = block.splitlines()
    assert lines[0] == "stateDiagram-v2"
    initial = ""
    edges: set[tuple[str, str, str]] = set()
    finals: set[str] = set()
    for line in lines[1:]:
        match = LINE.match(line)
        assert match is not None, f"not valid Mermaid state-diagram syntax: {line!r}"
        if match["initial"]:
            initial = match["initial"]
        elif match["src"]:
            edges.add((match["src"], match["dest"], match["label"].split(" ")[0]))
        elif match["final"]:
            finals.add(match["final"])
    return initial, edges, finals


@pytest.mark.parametrize("which", ["all", "order", "appeal", "complaint"])
def test_diagram_prints_valid_mermaid_for_the_rulebooks(which: str) -> None:
    result = CliRunner().invoke(main, ["diagram", which] if which != "all" else ["diagram"])

    assert result.exit_code == 0, result.output
    blocks = result.output.strip().split("\n\n")
    names = list(BOOKS) if which == "all" else [which]
    assert len(blocks) == len(names)
    for name, block in zip(names, blocks, strict=True):
        book = BOOKS[name]
        initial, edges, finals = parse_mermaid(block)
        assert initial == book.machine.initial
        expected = {
            (src, step.dest_from(src), step.trigger) for step in book.steps for src in step.sources
        }
        assert edges == expected
        shown = {initial} | finals | {s for edge in edges for s in edge[:2]}
        assert shown == set(book.states), f"{name}: states missing from the diagram"
        # A state nothing leaves for another is terminal and shown as such (it may still
        # record facts: a recovery on a resolved appeal, K2).
        leaving = {src for st in book.steps for src in st.sources if st.dest_from(src) != src}
        assert finals == set(book.states) - leaving
