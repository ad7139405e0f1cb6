"""The event log over HTTP, on SQLite and PostgreSQL: pages, and the live Server-Sent Events
stream resumed with Last-Event-ID without a gap or a duplicate."""

from __future__ import annotations

import json
from typing import Any

import httpx

from tests.http_server import Server, auth, paid_order
from tests.http_server import server_per_store as server_per_store


def lifecycle(http: httpx.Client) -> None:
    order = paid_order(http)
    released = http.post("/v1/commands/release", json={"order": order}, headers=auth("alice"))
    assert released.status_code == 200, released.text


def read_events(http: httpx.Client, count: int, **headers: str) -> list[dict[str, Any]]:
    """The first `count` events the stream sends, checking each `id:` against its data."""
    got: list[dict[str, Any]] = []
    with http.stream("GET", "/v1/events/stream", headers={**auth("carol"), **headers}) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        ident = None
        for line in response.iter_lines():
            if line.startswith("id: "):
                ident = int(line[4:])
            elif line.startswith("data: "):
                event = json.loads(line[6:])
                assert event["position"] == ident
                got.append(event)
                if len(got) == count:
                    break
    return got


def test_pages_of_the_log(server: Server) -> None:
    with server.client() as http:
        for _ in range(3):
            lifecycle(http)
        positions: list[int] = []
        after = 0
        while True:
            page = http.get(
                "/v1/events", params={"after": after, "limit": 4}, headers=auth("platform")
            ).json()
            if not page["events"]:
                assert page["next"] == after
                break
            positions += [e["position"] for e in page["events"]]
            after = page["next"]
        assert positions == sorted(set(positions)) and len(positions) >= 9
        # the keys file's agents, appointed as the server opened the store, come first
        events = http.get("/v1/events?limit=100", headers=auth("sam")).json()["events"]
        assert events[0]["type"] == "escrow:Trader.Registered.v1"
        first = next(e for e in events if e["kind"] == "order")
        assert first["type"] == "escrow:Order.Created.v1" and first["at"].endswith("Z")
        assert first["data"]["amount"] == "500"
        forbidden = http.get("/v1/events", headers=auth("alice"))
        assert forbidden.status_code == 403 and forbidden.json()["code"] == "not_authorized"
        assert http.get("/v1/events/stream", headers=auth("bob")).status_code == 403
        assert http.get("/v1/events/stream").status_code == 401


def test_the_stream_resumes_from_last_event_id_without_gap_or_duplicate(server: Server) -> None:
    with server.client() as http:
        lifecycle(http)
        head = http.get("/v1/events", params={"limit": 1000}, headers=auth("platform")).json()[
            "events"
        ]
        first = read_events(http, 4)
        assert [e["position"] for e in first] == [e["position"] for e in head[:4]]
        lifecycle(http)  # recorded while no one listens
        rest = read_events(http, len(head) - 4 + 3, **{"Last-Event-ID": str(first[-1]["position"])})
        everything = http.get(
            "/v1/events", params={"limit": 1000}, headers=auth("platform")
        ).json()["events"]
        seen = [e["position"] for e in first + rest]
        assert seen == [e["position"] for e in everything][: len(seen)]
        assert len(seen) == len(set(seen))
        bad = http.get("/v1/events/stream", headers={**auth("carol"), "Last-Event-ID": "x"})
        assert bad.status_code == 422


def test_the_stream_is_live(server: Server) -> None:
    with server.client() as http, server.client() as writer:
        head = http.get("/v1/events", params={"limit": 1000}, headers=auth("platform")).json()[
            "next"
        ]
        events: list[dict[str, Any]] = []
        with http.stream(
            "GET", f"/v1/events/stream?after={head}", headers=auth("carol")
        ) as response:
            lifecycle(writer)  # after the stream is open: it must arrive live
            for line in response.iter_lines():
                if line.startswith("data: "):
                    events.append(json.loads(line[6:]))
                    if len(events) == 3:
                        break
        assert [e["type"] for e in events] == [
            "escrow:Order.Created.v1",
            "escrow:Order.MarkedPaid.v1",
            "escrow:Order.Released.v1",
        ]
        assert events[0]["position"] > head
