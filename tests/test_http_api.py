"""The HTTP service over real TCP against a real `escrow serve` process, on SQLite and
PostgreSQL: the commands and their refusals, idempotency, who sees what, and the errors of
http.md's table, each as problem+json."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.helpers import order_fields as order_body
from tests.http_server import Server, auth, paid_order, serve
from tests.http_server import server_per_store as server_per_store

PROBLEM = "application/problem+json"


@pytest.fixture(scope="module")
def http(server: Server) -> Iterator[httpx.Client]:
    with server.client() as client:
        yield client


def new_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def post(http: httpx.Client, who: str, name: str, body: Any, **headers: str) -> httpx.Response:
    return http.post(f"/v1/commands/{name}", json=body, headers={**auth(who), **headers})


def ok(response: httpx.Response, status: int = 200) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    body: dict[str, Any] = response.json()
    return body


def refused(
    response: httpx.Response, status: int, code: str, rule: str | None = None
) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM
    body: dict[str, Any] = response.json()
    assert body["code"] == code and body.get("rule") == rule
    assert body["status"] == status and body["type"] == f"urn:escrow:problem:{code}"
    assert body["title"] and body["detail"]
    return body


def appealed(http: httpx.Client, order: str, appeal: str) -> dict[str, Any]:
    body = {"order": order, "reason": "seller_not_releasing", "appeal": appeal}
    return ok(post(http, "bob", "open_appeal", body), 201)


def event_head(http: httpx.Client, order: str) -> int:
    return len(ok(http.get(f"/v1/orders/{order}/timeline", headers=auth("carol")))["events"])


def test_a_whole_lifecycle_with_an_appeal(http: httpx.Client) -> None:
    order, appeal = new_id("o"), new_id("a")
    created = ok(post(http, "platform", "create_order", order_body(order)), 201)
    assert created["recorded"][0] | {"at": None} == {
        "stream": "order", "ref": order, "version": 1, "event": "Created", "rule": "O1",
        "actor": "platform", "at": None,
    }  # fmt: skip
    assert created["order"]["state"] == "awaiting_payment"
    assert created["order"]["amount"] == "500" and created["order"]["fiat_amount"] == "460.00"
    assert created["order"]["created_at"].endswith("Z")
    assert ok(post(http, "bob", "mark_paid", {"order": order}))["order"]["state"] == "paid"
    opened = appealed(http, order, appeal)
    assert opened["order"]["open_appeal"] == appeal and opened["appeal"]["state"] == "open"
    before = event_head(http, order)
    body = refused(
        post(http, "alice", "release", {"order": order}), 409, "release_blocked_by_appeal", "A5"
    )
    assert body["detail"] == "an appeal is open on this order"
    assert event_head(http, order) == before  # a refusal records nothing
    assert (
        ok(post(http, "carol", "start_review", {"appeal": appeal}))["appeal"]["state"]
        == "under_review"
    )
    resolved = ok(post(http, "carol", "resolve_appeal", {"appeal": appeal, "outcome": "release"}))
    assert resolved["appeal"]["outcome"] == "release" and resolved["order"]["state"] == "completed"
    final = http.get(f"/v1/orders/{order}", headers=auth("alice"))
    assert ok(final)["state"] == "completed" and ok(final)["escrow"]["released"] == "500"
    assert final.headers["etag"] == f'"{ok(final)["version"]}"'
    assert ok(http.get(f"/v1/appeals/{appeal}", headers=auth("bob")))["state"] == "resolved"
    events = ok(http.get(f"/v1/orders/{order}/timeline", headers=auth("bob")))["events"]
    assert [e["event"] for e in events][:3] == [
        "Order.Created",
        "Order.MarkedPaid",
        "Order.AppealOpened",
    ]


def test_amounts_are_plain_decimal_text(http: httpx.Client) -> None:
    """Issue 19: never `1E-7` in an answer (escrow.money.PlainDecimal)."""
    order = new_id("o")
    body = order_body(order, asset="BTC", amount="0.0000001", price="1")
    created = ok(post(http, "platform", "create_order", body), 201)["order"]
    assert (created["amount"], created["fiat_amount"]) == ("0.0000001", "0.0000001")
    assert created["escrow"]["released"] == "0"
    ok(post(http, "bob", "mark_paid", {"order": order}))
    ok(post(http, "alice", "release", {"order": order}))
    assert ok(http.get(f"/v1/orders/{order}", headers=auth("bob")))["escrow"]["released"] == (
        "0.0000001"
    )


def test_only_the_platform_appoints_agents(http: httpx.Client) -> None:
    name = new_id("agent")
    refused(post(http, "carol", "appoint_agent", {"agent": name}), 403, "not_authorized")
    ok(post(http, "platform", "appoint_agent", {"agent": name, "supervisor": True}), 200)
    refused(
        post(http, "platform", "appoint_agent", {"agent": name, "supervisor": True}),
        409,
        "invalid_state",
    )
    refused(post(http, "bob", "dismiss_agent", {"agent": name}), 403, "not_authorized")
    ok(post(http, "platform", "dismiss_agent", {"agent": name}), 200)


def test_each_refusal_has_its_status_code_and_rule(http: httpx.Client) -> None:
    order = paid_order(http)
    refused(post(http, "platform", "create_order", order_body(order)), 409, "duplicate_id")
    refused(post(http, "alice", "mark_paid", {"order": order}), 403, "not_authorized", "O6")
    refused(post(http, "bob", "mark_paid", {"order": new_id("none")}), 404, "not_found")
    refused(post(http, "bob", "mark_paid", {"order": order}), 409, "invalid_state")
    refused(post(http, "alice", "create_order", order_body(new_id("o"))), 403, "not_authorized")
    bad = refused(
        post(http, "platform", "create_order", order_body(new_id("o"), amount=1.5, asset="usdt")),
        422,
        "validation_error",
    )
    assert {e["field"] for e in bad["errors"]} == {"amount", "asset"}
    same = refused(
        post(http, "platform", "create_order", order_body(new_id("o"), buyer="alice")),
        422,
        "validation_error",
        "O1",
    )
    assert same["errors"] == []


def test_idempotent_replay_and_a_reused_key(http: httpx.Client) -> None:
    order, key = new_id("o"), new_id("key")
    first = post(http, "platform", "create_order", order_body(order), **{"Idempotency-Key": key})
    again = post(http, "platform", "create_order", order_body(order), **{"Idempotency-Key": key})
    assert ok(again, 201)["recorded"] == ok(first, 201)["recorded"]
    assert (
        again.headers["idempotent-replayed"] == "true"
        and "idempotent-replayed" not in first.headers
    )
    assert ok(again, 201)["replayed"] is True
    other = post(
        http, "platform", "create_order", order_body(new_id("o")), **{"Idempotency-Key": key}
    )
    refused(other, 422, "validation_error")
    refused(
        post(http, "bob", "mark_paid", {"order": order}, **{"Idempotency-Key": "k" * 65}),
        422,
        "validation_error",
    )
    assert event_head(http, order) == 1


def test_a_replay_answers_what_the_first_time_did(http: httpx.Client) -> None:
    """The views in a replayed answer are the order as that command left it, not as it is."""
    order, key = new_id("o"), new_id("key")
    ok(post(http, "platform", "create_order", order_body(order)), 201)
    first = ok(post(http, "bob", "mark_paid", {"order": order}, **{"Idempotency-Key": key}))
    ok(post(http, "alice", "release", {"order": order}))
    again = ok(post(http, "bob", "mark_paid", {"order": order}, **{"Idempotency-Key": key}))
    assert again["replayed"] is True
    assert again["order"] == first["order"] and again["order"]["state"] == "paid"


def test_allowed_names_the_reasons_a_party_may_appeal_for(http: httpx.Client) -> None:
    order = paid_order(http)
    staff = ok(http.get(f"/v1/orders/{order}/allowed", headers=auth("carol")))
    assert "open_appeal" not in staff["commands"] and staff["appeal_reasons"] == []
    buyer = ok(http.get(f"/v1/orders/{order}/allowed", headers=auth("bob")))["appeal_reasons"]
    seller = ok(http.get(f"/v1/orders/{order}/allowed", headers=auth("alice")))["appeal_reasons"]
    assert "seller_not_releasing" in buyer and "seller_not_releasing" not in seller
    assert "payment_not_received" in seller and "payment_not_received" not in buyer
    body = {"order": order, "reason": buyer[-1], "appeal": new_id("a")}
    refused(  # a reason not listed for the caller is one open_appeal refuses
        post(http, "bob", "open_appeal", {**body, "reason": "payment_not_received"}),
        403,
        "not_authorized",
        "A6",
    )
    ok(post(http, "bob", "open_appeal", body), 201)
    after = ok(http.get(f"/v1/orders/{order}/allowed", headers=auth("bob")))
    assert "open_appeal" not in after["commands"] and after["appeal_reasons"] == []


def test_a_trader_sees_only_its_own(http: httpx.Client) -> None:
    order, appeal = paid_order(http), new_id("a")
    appealed(http, order, appeal)
    for path in (
        f"/v1/orders/{order}",
        f"/v1/orders/{order}/timeline",
        f"/v1/orders/{order}/allowed",
        f"/v1/appeals/{appeal}",
        "/v1/traders/alice",
    ):
        missing = refused(http.get(path, headers=auth("eve")), 404, "not_found")
        assert (
            order not in str(http.get(path.replace(order, "nothing"), headers=auth("eve")).json())
            or missing
        )
        ok(http.get(path, headers=auth("carol")))
        ok(http.get(path, headers=auth("platform")))
    ok(http.get(f"/v1/orders/{order}", headers=auth("alice")))
    assert ok(http.get(f"/v1/orders/{order}/allowed", headers=auth("bob")))["commands"] == []
    assert order not in {
        o["order"] for o in ok(http.get("/v1/orders", headers=auth("eve")))["orders"]
    }
    assert ok(http.get("/v1/orders?trader=alice", headers=auth("eve")))["orders"] == []
    mine = ok(http.get("/v1/orders?limit=500", headers=auth("bob")))["orders"]
    assert order in {o["order"] for o in mine} and all(
        "bob" in (o["buyer"], o["seller"]) for o in mine
    )
    for path in ("/v1/queue", "/v1/ledger"):
        refused(http.get(path, headers=auth("bob")), 403, "not_authorized")
        ok(http.get(path, headers=auth("sam")))
    assert appeal in {
        a["appeal"] for a in ok(http.get("/v1/queue", headers=auth("carol")))["appeals"]
    }


def test_orders_are_paged_by_an_opaque_cursor(http: httpx.Client) -> None:
    made = {paid_order(http) for _ in range(3)}
    seen: list[str] = []
    after = None
    while True:
        page = ok(
            http.get(
                "/v1/orders",
                params={"limit": 2, **({"after": after} if after else {})},
                headers=auth("platform"),
            )
        )
        seen += [o["order"] for o in page["orders"]]
        if page["next"] is None:
            break
        after = page["next"]
    assert made <= set(seen) and len(seen) == len(set(seen))
    refused(
        http.get("/v1/orders?after=nonsense", headers=auth("platform")), 422, "validation_error"
    )
    refused(http.get("/v1/orders?state=lost", headers=auth("platform")), 422, "validation_error")


def test_the_errors_of_the_table(http: httpx.Client, server: Server) -> None:
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic dG9rLWJvYg=="}):
        response = http.get("/v1/orders", headers=headers)
        refused(response, 401, "unauthenticated")
        assert response.headers["www-authenticate"] == "Bearer"
    refused(post(http, "bob", "no_such_command", {}), 404, "not_found")
    refused(post(http, "bob", "release", {"order": "o1", "by": "alice"}), 422, "validation_error")
    refused(
        post(http, "bob", "release", {"order": "o1", "command_id": "x"}), 422, "validation_error"
    )
    refused(post(http, "bob", "release", ["o1"]), 422, "validation_error")
    misspelt = refused(
        http.get("/v1/orders?staet=paid", headers=auth("platform")), 422, "validation_error"
    )
    assert misspelt["errors"] == [{"field": "staet", "message": "not a parameter of this route"}]
    extra = http.post("/v1/commands/release?dry_run=1", json={"order": "o1"}, headers=auth("bob"))
    assert refused(extra, 422, "validation_error")["errors"][0]["field"] == "dry_run"
    assert http.get("/v1/commands/release", headers=auth("bob")).status_code == 405
    not_json = http.post("/v1/commands/release", content=b"{not json", headers=auth("bob"))
    refused(not_json, 400, "invalid_json")
    big = {"appeal": "a1", "description": "x" * (65 * 1024)}
    refused(post(http, "bob", "add_evidence", big), 413, "payload_too_large")

    def chunks() -> Iterator[bytes]:  # no Content-Length: the size is counted as it streams
        yield b'{"appeal": "a1", "description": "'
        for _ in range(70):
            yield b"x" * 1024
        yield b'"}'

    streamed = http.post("/v1/commands/add_evidence", content=chunks(), headers=auth("bob"))
    refused(streamed, 413, "payload_too_large")
    assert ok(http.get("/healthz"))["status"] == "ok"
    assert ok(http.get("/readyz"))["status"] == "ready"
    assert http.get("/openapi.json").json()["openapi"].startswith("3.1")
    assert "/openapi.json" in http.get("/docs").text
    log = server.log.read_text()
    assert "POST /v1/commands/{command} 404" in log and "GET /v1/orders/{order} 200" in log
    assert "POST /v1/commands/release 422" in log  # a command's route names the command
    assert "tok-" not in log


def test_an_unreachable_store_is_503_and_records_nothing(tmp_path: Path) -> None:
    with (
        serve("postgresql://postgres@127.0.0.1:9/test", tmp_path) as down,
        down.client("platform") as http,
    ):
        assert http.get("/healthz").status_code == 200
        assert http.get("/readyz").status_code == 503
        refused(post(http, "platform", "create_order", order_body("o1")), 503, "store_unavailable")
        refused(http.get("/v1/orders/o1"), 503, "store_unavailable")


def test_a_complaint_over_http_with_four_eyes(http: httpx.Client) -> None:
    order, appeal, complaint = new_id("o"), new_id("a"), new_id("c")
    ok(post(http, "platform", "create_order", order_body(order)), 201)
    ok(post(http, "bob", "mark_paid", {"order": order}))
    appealed(http, order, appeal)
    ok(post(http, "carol", "start_review", {"appeal": appeal}))
    ok(post(http, "carol", "resolve_appeal", {"appeal": appeal, "outcome": "release"}))
    body = {"complaint": complaint, "appeal": appeal, "statement": "the seller never answered"}
    filed = ok(post(http, "alice", "file_complaint", body), 201)
    assert filed["complaint"]["state"] == "filed" and filed["complaint"]["complainant"] == "alice"
    refused(
        post(http, "carol", "start_complaint_review", {"complaint": complaint}),
        403,
        "not_authorized",
        "E3",
    )  # an agent, not a supervisor
    queue = ok(http.get("/v1/queue", headers=auth("sam")))
    assert complaint in [c["complaint"] for c in queue["complaints"]]
    allowed = ok(http.get(f"/v1/complaints/{complaint}/allowed", headers=auth("sam")))
    assert "start_complaint_review" in allowed["commands"]
    ok(post(http, "sam", "start_complaint_review", {"complaint": complaint}))
    decided = ok(
        post(http, "sam", "decide_complaint", {"complaint": complaint, "decision": "upheld"})
    )
    assert decided["complaint"]["state"] == "upheld"
    seen = http.get(f"/v1/complaints/{complaint}", headers=auth("alice"))
    assert ok(seen)["decision"] == "upheld" and seen.headers["etag"] == f'"{ok(seen)["version"]}"'
    refused(http.get(f"/v1/complaints/{complaint}", headers=auth("eve")), 404, "not_found")
