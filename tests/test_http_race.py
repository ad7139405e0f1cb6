"""Two HTTP clients racing on one order against `escrow serve --workers 2` on PostgreSQL: the
engine's own race guarantees hold across processes behind HTTP (one winner, one clean 409,
never a release during an appeal)."""

from __future__ import annotations

import subprocess
import threading
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.http_server import ESCROW, KEYS, Server, paid_order, server_on

ROUNDS = 8


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with server_on("postgresql", tmp_path_factory.mktemp("race"), "--workers", "2") as running:
        yield running


def race(server: Server, *calls: tuple[str, str, dict[str, Any]]) -> list[httpx.Response]:
    """Each call from its own client (its own connection), released at once."""
    clients = [server.client(who) for who, _, _ in calls]
    for client in clients:  # connect first, so the race is between the requests
        client.get("/healthz")
    start = threading.Barrier(len(calls))
    answers: list[httpx.Response | None] = [None] * len(calls)

    def send(i: int) -> None:
        _, name, body = calls[i]
        start.wait()
        answers[i] = clients[i].post(f"/v1/commands/{name}", json=body)

    threads = [threading.Thread(target=send, args=(i,)) for i in range(len(calls))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for client in clients:
        client.close()
    assert all(a is not None for a in answers)
    return [a for a in answers if a is not None]


def test_release_against_open_appeal_never_releases_during_an_appeal(server: Server) -> None:
    winners: Counter[str] = Counter()
    with server.client("carol") as http:
        for i in range(ROUNDS):
            order, appeal = f"ra{i}", f"raa{i}"
            paid_order(http, order)
            released, appealed = race(
                server,
                ("alice", "release", {"order": order}),
                (
                    "bob",
                    "open_appeal",
                    {"order": order, "reason": "seller_not_releasing", "appeal": appeal},
                ),
            )
            assert appealed.status_code == 201, appealed.text  # on a paid order, or after it (A2)
            view = http.get(f"/v1/orders/{order}").json()
            if released.status_code == 200:
                winners["release"] += 1
                assert view["state"] == "completed" and view["escrow"]["released"] == "500"
            else:
                winners["appeal"] += 1
                assert released.status_code == 409, released.text
                assert released.json()["code"] == "release_blocked_by_appeal"
                assert released.json()["rule"] == "A5"
                assert view["state"] == "in_appeal" and view["escrow"]["released"] == "0"
    assert sum(winners.values()) == ROUNDS
    print(f"\nrelease/appeal over HTTP: {dict(winners)}")


def test_release_against_cancel_exactly_one_wins(server: Server) -> None:
    with server.client("carol") as http:
        for i in range(ROUNDS):
            order = f"rc{i}"
            paid_order(http, order)
            answers = race(
                server,
                ("alice", "release", {"order": order}),
                ("bob", "cancel_order", {"order": order}),
            )
            assert sorted(a.status_code for a in answers) == [200, 409], [a.text for a in answers]
            loser = next(a for a in answers if a.status_code == 409)
            assert loser.headers["content-type"] == "application/problem+json"
            assert loser.json()["code"] == "invalid_state"
            winner = next(a for a in answers if a.status_code == 200).json()
            assert http.get(f"/v1/orders/{order}").json()["state"] == winner["order"]["state"]
            assert http.get(f"/v1/orders/{order}").json()["version"] == 3


def test_more_than_one_worker_needs_postgresql(tmp_path: Path) -> None:
    (tmp_path / "keys.yaml").write_text(KEYS)
    done = subprocess.run(
        [
            ESCROW,
            "--store",
            f"sqlite:///{tmp_path / 'x.db'}",
            "serve",
            "--keys",
            str(tmp_path / "keys.yaml"),
            "--workers",
            "2",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2 and "needs a PostgreSQL store" in done.stderr
