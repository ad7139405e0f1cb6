"""What the CS console reads from the HTTP service beyond http.md's first routes: who the token
is (`/v1/me`), what the caller may do on an appeal, and the log's head (where a live stream of
only what comes next starts)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.helpers import order_fields
from tests.http_server import Server, auth, server_on


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with server_on("sqlite", tmp_path_factory.mktemp("console")) as running:
        yield running


@pytest.fixture(scope="module")
def http(server: Server) -> Iterator[httpx.Client]:
    with server.client() as client:
        yield client


def new_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def post(http: httpx.Client, who: str, name: str, body: dict[str, Any]) -> dict[str, Any]:
    answer = http.post(f"/v1/commands/{name}", json=body, headers=auth(who))
    assert answer.status_code in (200, 201), answer.text
    result: dict[str, Any] = answer.json()
    return result


def appeal_on_a_paid_order(
    http: httpx.Client, reason: str, opener: str = "alice", **order: Any
) -> str:
    appeal, ref = new_id("AP"), new_id("P2P")
    post(http, "platform", "create_order", order_fields(ref, **order))
    post(http, "bob", "mark_paid", {"order": ref})
    post(http, opener, "open_appeal", {"order": ref, "reason": reason, "appeal": appeal})
    return appeal


def test_the_routes_the_console_reads(http: httpx.Client) -> None:
    assert http.get("/v1/me", headers=auth("carol")).json() == {"name": "carol", "role": "agent"}
    assert http.get("/v1/me").status_code == 401
    appeal = appeal_on_a_paid_order(http, "seller_not_releasing", "bob")
    allowed = http.get(f"/v1/appeals/{appeal}/allowed", headers=auth("carol")).json()
    assert allowed == {
        "appeal": appeal,
        "actor": "carol",
        "commands": ["start_review", "add_evidence"],
    }
    assert http.get(f"/v1/appeals/{appeal}/allowed", headers=auth("eve")).status_code == 404
    bob = http.get(f"/v1/appeals/{appeal}/allowed", headers=auth("bob")).json()["commands"]
    assert bob == ["add_evidence", "cancel_appeal"]
    log = http.get("/v1/events", params={"limit": 1}, headers=auth("platform")).json()
    everything = http.get("/v1/events", params={"limit": 1000}, headers=auth("platform")).json()
    assert log["head"] == everything["events"][-1]["id"] == everything["head"]
