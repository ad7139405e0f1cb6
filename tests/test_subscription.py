"""The Python extension point: an `EventHandler` run by a `Subscription` gets every event once,
its writes committed with its position, on memory, SQLite and PostgreSQL, and after `kill -9`
of the process running it at random instants."""

from __future__ import annotations

import random
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from escrow.clock import ManualClock
from escrow.commands import Cursor, Escrow, EventFeed, EventHandler, Subscription
from escrow.commands.audit.history import History
from escrow.commands.simulation.simulate import simulate
from escrow.projections.readstore import ReadStore
from escrow.store import parse_store_url
from tests.conftest import AGENTS, START

ROOT = Path(__file__).resolve().parent.parent


class Seen(EventHandler):
    """Every event it gets, one row each, deliberately without a key: a repeat would show."""

    name = "test-seen"

    def __init__(self, fail_at: int | None = None) -> None:
        self.fail_at = fail_at

    def setup(self, cur: Cursor) -> None:
        cur.execute("CREATE TABLE IF NOT EXISTS test_seen (position BIGINT, movement TEXT)")

    def handle(self, cur: Cursor, event: dict[str, Any]) -> None:
        if event["position"] == self.fail_at:
            raise RuntimeError("the backend's handler failed")
        moved = event["movement"]
        cur.execute(
            "INSERT INTO test_seen VALUES (?, ?)",
            [event["position"], None if moved is None else moved["escrow"]],
        )


def seen(read: ReadStore) -> list[int]:
    return [int(r[0]) for r in read.query("SELECT position FROM test_seen ORDER BY position")]


def test_every_event_once_and_a_failure_rolls_back_its_batch(engine: Escrow) -> None:
    simulate(engine, 15, seed=2)
    feed = EventFeed(History(engine.app))
    positions = [e["position"] for e in feed.page(0, 100_000)]
    failing = Subscription(engine, Seen(fail_at=positions[len(positions) // 2]), batch=20)
    with pytest.raises(RuntimeError):
        failing.catch_up()
    done = failing.position()
    assert seen(engine.wiring.read) == [p for p in positions if p <= done]  # batches before it
    with Subscription(engine, Seen(), batch=20) as subscription:
        subscription.catch_up()
        assert seen(engine.wiring.read) == positions
        simulate(engine, 5, seed=3)
        subscription.catch_up()
    assert seen(engine.wiring.read) == [e["position"] for e in feed.page(0, 100_000)]
    assert subscription.position() == feed.head()


CHILD = """
import sys, time
from typing import Any
sys.path.insert(0, {root!r})
from escrow.commands import Subscription
from tests.test_subscription import Seen

class Slow(Seen):
    def handle(self, cur: Any, event: dict[str, Any]) -> None:
        super().handle(cur, event)
        time.sleep(0.002)  # batches long enough for a kill to land inside one

Subscription(sys.argv[1], Slow(), batch=50).run(poll=0.05)
"""


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_kill_9_at_random_instants_never_skips_or_repeats(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    url = (
        f"sqlite:///{tmp_path / 'escrow.db'}"
        if backend == "sqlite"
        else str(request.getfixturevalue("pg_schema_url"))
    )
    with Escrow(url, clock=ManualClock(START), agents=AGENTS, read_models="deferred") as engine:
        simulate(engine, 120, seed=7)
        rng = random.Random(16)
        code = CHILD.format(root=str(ROOT))
        midway = 0
        tracking = ReadStore.open(parse_store_url(url))
        for _ in range(6):
            child = subprocess.Popen([sys.executable, "-c", code, url])
            time.sleep(rng.uniform(0.6, 1.2))  # start-up, then somewhere inside a batch
            child.kill()
            child.wait()
            (position,) = tracking.query(
                "SELECT position FROM escrow_tracking WHERE name = ?", [Seen.name]
            )[0]
            midway += 0 < position < engine.app.recorder.max_notification_id()
            simulate(engine, 4, seed=rng.randrange(1000))  # the log grows meanwhile
        with Subscription(url, Seen()) as subscription:
            subscription.catch_up()
        positions = seen(tracking)
        tracking.close()
        assert midway >= 3, "the kills should land while the handler is busy"
        expected = [e["position"] for e in EventFeed(History(engine.app)).page(0, 1_000_000)]
        assert positions == expected


def test_the_example_in_docs_events_md_runs(tmp_path: Path) -> None:
    text = (ROOT / "docs" / "events.md").read_text()
    section = text[text.index("## In Python") :]
    start = section.index("```python\n") + 10
    example = section[start : section.index("```", start)]
    script = tmp_path / "example.py"
    script.write_text(f"import sys\nsys.path.insert(0, {str(ROOT)!r})\n{example}")
    done = subprocess.run(
        [sys.executable, str(script)], cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "exchange.db").exists()
