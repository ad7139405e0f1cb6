"""Racing commands from threads end as one winner and one clean refusal, never as a release
during an appeal, a lost event or a duplicated one.

Each round starts the two commands at the same instant (a `threading.Barrier`), either through
one shared `Escrow` (threads of one process) or through two `Escrow` objects on the same store
(as two processes would). The store is the judge: every round reads back the stored stream and
checks its events, their order and their versions, and that the log grew by exactly what the
successful commands reported. Most rounds run on PostgreSQL; SQLite runs fewer, and the
in-memory store (one process only) runs the shared variant.
"""

from __future__ import annotations

import sys
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from decimal import Decimal
from typing import Any

import pytest
from eventsourcing.persistence import IntegrityError

from escrow.commands.api import Escrow
from escrow.errors import EscrowError
from escrow.recording import stream_id
from escrow.views import Outcome
from tests.helpers import event_count, order_fields

Result = Outcome | BaseException

# Rounds per backend: enough on PostgreSQL to hit every interleaving many times.
RACE_ROUNDS = {"memory": 100, "sqlite": 60, "postgresql": 200}
OTHER_ROUNDS = {"memory": 60, "sqlite": 30, "postgresql": 60}


def backend_of(url: str) -> str:
    return "postgresql" if url.startswith("postgres") else url.split(":", 1)[0]


@pytest.fixture(params=["shared", "separate"])
def engines(
    request: pytest.FixtureRequest, store_url: str, make_engine: Callable[..., Escrow]
) -> Iterator[tuple[Escrow, Escrow, Counter[str]]]:
    """Two handles on one store: the same Escrow twice, or two Escrow objects. The counter
    tallies the version clashes the engines met (each one made a command decide again)."""
    if request.param == "separate" and store_url == "memory:":
        pytest.skip("an in-memory store lives in one Escrow: no second process can share it")
    first = make_engine()
    second = first if request.param == "shared" else make_engine()
    clashes: Counter[str] = Counter()
    for engine in {id(first): first, id(second): second}.values():
        _count_clashes(engine, clashes)
    # Switch threads far more often than every 5 ms: an in-memory command is shorter than
    # that, so otherwise one thread would always finish before the other starts.
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        yield first, second, clashes
    finally:
        sys.setswitchinterval(interval)


def _count_clashes(engine: Escrow, clashes: Counter[str]) -> None:
    save = engine.app.save

    def counting_save(*aggregates: Any, **kwargs: Any) -> Any:
        try:
            return save(*aggregates, **kwargs)
        except IntegrityError:
            clashes["clash"] += 1
            raise

    engine.app.save = counting_save  # type: ignore[method-assign]


Call = tuple[Escrow, str, dict[str, Any]]  # which engine runs which command with which fields


def race(*calls: Call) -> list[Result]:
    """Run the commands in threads released together; each gives its outcome or exception."""
    barrier = threading.Barrier(len(calls))
    results: list[Result | None] = [None] * len(calls)

    def run(i: int, engine: Escrow, name: str, fields: dict[str, Any]) -> None:
        barrier.wait()
        try:
            results[i] = engine.run(name, dict(fields))
        except BaseException as e:  # kept for the test to judge, never swallowed
            results[i] = e

    threads = [threading.Thread(target=run, args=(i, *c)) for i, c in enumerate(calls)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
        assert not t.is_alive(), "a racing command never returned"
    assert all(r is not None for r in results)
    return [r for r in results if r is not None]


def refusal(result: Result) -> EscrowError:
    assert isinstance(result, EscrowError), f"expected a clean refusal, got {result!r}"
    return result


def success(result: Result) -> Outcome:
    assert isinstance(result, Outcome), f"expected success, got {result!r}"
    return result


def stream(engine: Escrow, kind: str, ref: str) -> list[Any]:
    """The stored events of one stream, checked to have versions 1..n with no gap."""
    events = list(engine.app.repository.event_store.get(stream_id(kind, ref)))
    assert [e.originator_version for e in events] == list(range(1, len(events) + 1))
    return events


def names(events: list[Any]) -> list[str]:
    return [type(e).__name__ for e in events]


def new_events(engine: Escrow, after: int) -> int:
    """How many events the log holds after position `after` (ids may skip on PostgreSQL)."""
    return len(engine.app.recorder.select_notifications(after + 1, 10_000))


def recorded(*results: Result) -> int:
    return sum(len(r.recorded) for r in results if isinstance(r, Outcome))


def check_raced(clashes: Counter[str], url: str) -> None:
    """The rounds really raced: on a database the loser of nearly every round met a version
    clash and decided again (in memory, commands are so short that a clash is rarer)."""
    if url != "memory:":
        assert clashes["clash"] > 0, "no round raced: the test proved nothing"


def check_ledger(engine: Escrow, released: Decimal, returned: Decimal, locked: Decimal) -> None:
    """Escrow conserved after all rounds; the ledger rebuilt from zero agrees."""
    ledger = engine.ledger("USDT")
    assert (ledger.released, ledger.returned) == (released, returned)
    assert ledger.in_escrow == locked - released - returned
    engine.projector.rebuild()
    assert engine.ledger("USDT") == ledger


def test_release_and_appeal_race_never_releases_during_an_appeal(
    engines: tuple[Escrow, Escrow, Counter[str]], store_url: str
) -> None:
    seller_engine, buyer_engine, clashes = engines
    rounds = RACE_ROUNDS[backend_of(store_url)]
    winners: Counter[str] = Counter()
    for i in range(rounds):
        order = f"o{i}"
        seller_engine.run("create_order", order_fields(order))
        seller_engine.run("mark_paid", {"order": order, "by": "bob"})
        before = event_count(seller_engine)
        released, appealed = race(
            (seller_engine, "release", {"order": order, "by": "alice"}),
            (
                buyer_engine,
                "open_appeal",
                {"order": order, "by": "bob", "reason": "seller_not_releasing", "appeal": f"a{i}"},
            ),
        )
        success(appealed)  # accepted either way: on a paid order, or after the release (A2)
        view = buyer_engine.order(order)
        events = stream(seller_engine, "order", order)
        assert view.open_appeal == f"a{i}"
        if isinstance(released, Outcome):
            winners["release first"] += 1
            assert view.state == "completed"
            assert view.escrow.released == view.amount and view.escrow.returned == 0
            assert names(events) == ["Created", "MarkedPaid", "Released", "AppealOpened"]
            assert events[-1].state == "completed"  # A2: the late appeal changed nothing
        else:
            winners["appeal first"] += 1
            assert refusal(released).code == "release_blocked_by_appeal"
            assert view.state == "in_appeal"
            assert view.escrow.released == view.escrow.returned == 0
            assert names(events) == ["Created", "MarkedPaid", "AppealOpened"]
        assert names(stream(seller_engine, "appeal", f"a{i}")) == ["Opened"]
        assert new_events(seller_engine, before) == recorded(released, appealed)
    assert sum(winners.values()) == rounds
    print(f"\n{store_url[:10]} release/appeal race: {dict(winners)}, {clashes['clash']} clashes")
    check_raced(clashes, store_url)
    amount = Decimal(order_fields()["amount"])
    check_ledger(seller_engine, amount * winners["release first"], Decimal(0), amount * rounds)


def test_two_agents_resolving_one_appeal_exactly_one_wins(
    engines: tuple[Escrow, Escrow, Counter[str]], store_url: str
) -> None:
    carol_engine, dave_engine, clashes = engines
    rounds = OTHER_ROUNDS[backend_of(store_url)]
    winners: Counter[str] = Counter()
    for i in range(rounds):
        order, appeal = f"o{i}", f"a{i}"
        carol_engine.run("create_order", order_fields(order))
        carol_engine.run("mark_paid", {"order": order, "by": "bob"})
        carol_engine.run(
            "open_appeal",
            {"order": order, "by": "bob", "reason": "seller_not_releasing", "appeal": appeal},
        )
        carol_engine.run("start_review", {"appeal": appeal, "by": "carol"})
        before = event_count(carol_engine)
        by_carol, by_dave = race(
            (
                carol_engine,
                "resolve_appeal",
                {"appeal": appeal, "by": "carol", "outcome": "release"},
            ),
            (dave_engine, "resolve_appeal", {"appeal": appeal, "by": "dave", "outcome": "cancel"}),
        )
        won = [r for r in (by_carol, by_dave) if isinstance(r, Outcome)]
        assert len(won) == 1, f"round {i}: {by_carol!r} / {by_dave!r}"
        loser = by_dave if won[0] is by_carol else by_carol
        assert refusal(loser).code == "invalid_state", loser
        outcome = "release" if won[0] is by_carol else "cancel"
        winners[outcome] += 1
        view, a = dave_engine.order(order), dave_engine.appeal(appeal)
        assert (a.state, a.outcome) == ("resolved", outcome)
        assert view.open_appeal is None
        if outcome == "release":
            assert view.state == "completed" and view.escrow.released == view.amount
        else:
            assert view.state == "cancelled" and view.escrow.returned == view.amount
        order_events = stream(carol_engine, "order", order)
        assert names(order_events)[-1:] == ["AppealResolved"]
        assert names(order_events).count("AppealResolved") == 1
        assert order_events[-1].outcome == outcome
        assert names(stream(carol_engine, "appeal", appeal)) == [
            "Opened",
            "ReviewStarted",
            "Resolved",
        ]
        assert new_events(carol_engine, before) == recorded(by_carol, by_dave) == 2
    print(f"\n{store_url[:10]} resolve race: {dict(winners)}, {clashes['clash']} clashes")
    check_raced(clashes, store_url)
    amount = Decimal(order_fields()["amount"])
    check_ledger(
        carol_engine, amount * winners["release"], amount * winners["cancel"], amount * rounds
    )


def test_one_command_id_sent_twice_at_once_executes_once(
    engines: tuple[Escrow, Escrow, Counter[str]], store_url: str
) -> None:
    first, second, clashes = engines
    rounds = OTHER_ROUNDS[backend_of(store_url)]
    for i in range(rounds):
        order, buyer = f"o{i}", f"buyer{i}"  # a buyer per round: C4 sanctions stay apart
        first.run("create_order", order_fields(order, buyer=buyer))
        first.run("mark_paid", {"order": order, "by": buyer})
        reason = "bank_account_frozen" if i % 3 == 0 else "payment_not_received"
        fields = {
            "order": order,
            "by": "alice",
            "reason": reason,
            "appeal": f"a{i}",
            "command_id": f"appeal-{i}",
        }
        before = event_count(first)
        one, two = race((first, "open_appeal", fields), (second, "open_appeal", fields))
        one, two = success(one), success(two)
        assert sorted([one.replayed, two.replayed]) == [False, True], "executed twice"
        assert one.recorded == two.recorded  # both callers see the same outcome
        assert names(stream(first, "order", order)).count("AppealOpened") == 1
        assert names(stream(first, "appeal", f"a{i}")) == ["Opened"]
        sanctions = len(stream(first, "trader", buyer)) if reason == "bank_account_frozen" else 0
        assert len(one.recorded) == 2 + sanctions  # appeal, order (+ trader registered, S2)
        assert new_events(first, before) == len(one.recorded) + 1  # and one receipt
        if i % 10 == 0:  # the same id on a command that is refused: refused for both, no trace
            before = event_count(first)
            late = {**fields, "appeal": f"late{i}", "command_id": f"late-{i}"}
            no, nay = race((first, "open_appeal", late), (second, "open_appeal", late))
            assert refusal(no).code == refusal(nay).code == "appeal_already_open"
            assert event_count(first) == before
    print(f"\n{store_url[:10]} duplicate command_id race: {clashes['clash']} clashes")
    check_raced(clashes, store_url)
