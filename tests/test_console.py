"""The CS console (`/console`) end to end: a real `escrow serve` on SQLite and PostgreSQL,
driven in headless Chromium (Debian's, through Playwright) the way an agent and a trader use
it, with the test itself acting as the exchange and the traders through the HTTP API. Also
what the console needs from the service: its files, shipped as package data and sent with a
strict Content-Security-Policy, and the routes it reads (`/v1/me`, an appeal's `allowed`, the
log's head).

Screenshots of the queue and an order's page go to a temporary folder, or to the folder named
by ESCROW_SCREENSHOTS (`ESCROW_SCREENSHOTS=docs/` refreshes the README's)."""

from __future__ import annotations

import fnmatch
import os
import re
import tomllib
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

from tests.helpers import order_fields
from tests.http_server import TOKENS, Server, auth, paid_order
from tests.http_server import server_per_store as server_per_store

ROOT = Path(__file__).resolve().parent.parent
STATIC = ROOT / "commands" / "http" / "console" / "static"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
LAPTOP = {"width": 1366, "height": 768}
WAIT_MS = 10_000


@pytest.fixture(scope="module")
def http(server: Server) -> Iterator[httpx.Client]:
    with server.client() as client:
        yield client


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not Path(CHROMIUM).exists():
        if os.environ.get("CI"):
            pytest.fail(f"CI runs the console tests: install Debian's chromium ({CHROMIUM})")
        pytest.skip(f"no {CHROMIUM}: apt-get install chromium (CI installs it and runs these)")
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield launched
        launched.close()


@pytest.fixture
def page(browser: Browser, server: Server) -> Iterator[Page]:
    context = browser.new_context(viewport=LAPTOP, base_url=server.url)
    context.set_default_timeout(WAIT_MS)
    opened = context.new_page()
    yield opened
    context.close()


@pytest.fixture(scope="module")
def screenshots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = os.environ.get("ESCROW_SCREENSHOTS")
    return Path(folder) if folder else tmp_path_factory.mktemp("screenshots")


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


def sign_in(page: Page, who: str) -> None:
    page.goto("/console")
    page.get_by_label("Token").fill(TOKENS[who])
    page.get_by_role("button", name="Sign in").click()
    expect(page.locator(".who-name")).to_have_text(who)


def act(page: Page, command: str, **fields: str) -> None:
    """Open a command's form from its button, fill it, send it."""
    page.locator(f"button[data-command={command}]").click()
    form = page.locator("form.command-form")
    for label, value in fields.items():
        control = form.get_by_label(label, exact=False)
        if control.evaluate("e => e.tagName") == "SELECT":
            control.select_option(value)
        else:
            control.fill(value)
    form.get_by_role("button", name=f"Send: {command.replace('_', ' ')}").click()


def test_an_agent_works_an_appeal_from_the_queue_to_its_resolution(
    page: Page, http: httpx.Client, screenshots: Path
) -> None:
    appeal_on_a_paid_order(http, "seller_not_releasing", "bob")
    waiting = appeal_on_a_paid_order(http, "payment_not_received", "alice", instant=False)
    post(http, "sam", "start_review", {"appeal": waiting})
    post(http, "sam", "request_payment_proof", {"appeal": waiting})  # due in the proof window
    sign_in(page, "carol")
    expect(page.get_by_role("heading", name="Queue")).to_be_visible()
    expect(page.locator(".live")).to_have_text("● Live")
    page.evaluate("window.notReloaded = true")

    appeal = appeal_on_a_paid_order(http, "non_real_name_payment")  # C3: cancel needs a refund
    row = page.locator(f"tr[data-case={appeal}]")
    expect(row).to_be_visible()
    expect(row).to_contain_text("non real name payment")
    expect(page.locator(f"tr[data-case={waiting}]")).to_contain_text("payment proof")
    assert page.evaluate("window.notReloaded") is True
    opened = row.locator("time").first  # local time shown, UTC on hover
    expect(opened).to_have_attribute("title", re.compile(r"^\d{4}-\d\d-\d\dT.*Z \(UTC\)$"))
    page.screenshot(path=screenshots / "console-queue.png")

    row.get_by_role("link", name=appeal).click()
    expect(page.locator("#appeal-state")).to_have_text("open")
    act(page, "start_review")
    expect(page.locator("#appeal-state")).to_have_text("under review")

    act(page, "resolve_appeal", Outcome="cancel")  # the wrong moment: no refund settled yet
    problem = page.locator(".problem")
    expect(problem.locator(".code")).to_have_text("refund_pending")
    expect(problem).to_contain_text("rule R2")
    expect(problem).to_contain_text("a cancel waits on a refund confirmed or refused")
    expect(page.locator("#appeal-state")).to_have_text("under review")
    page.screenshot(path=screenshots / "console-order.png", full_page=True)
    assert http.get(f"/v1/appeals/{appeal}", headers=auth("carol")).json()["state"] == (
        "under_review"
    )

    act(page, "request_refund", Amount="460.00", Note="third-party payment: refund first")
    expect(page.locator("#appeal-state")).to_have_text("awaiting refund")
    post(http, "alice", "report_refund", {"appeal": appeal, "amount": "460.00"})
    act(page, "confirm_refund")  # its button came with the live update of alice's report
    expect(page.locator("#appeal-state")).to_have_text("under review")
    post(
        http, "alice", "add_evidence",
        {"appeal": appeal, "description": "bank statement of the refund", "refs": ["stmt-0412.pdf"]},
    )  # fmt: skip
    expect(page.locator(".evidence")).to_contain_text("bank statement of the refund")
    act(page, "resolve_appeal", Outcome="cancel")
    expect(page.locator("#order-state")).to_have_text("cancelled")
    expect(page.locator("#appeal-state")).to_have_text("resolved")
    expect(page.locator(".strip li.current")).to_have_text("cancelled")
    expect(page.locator("tr[data-event='Appeal.Resolved']")).to_contain_text("carol")


def test_a_trader_sees_only_its_own_orders(page: Page, http: httpx.Client) -> None:
    own = new_id("P2P")
    post(http, "platform", "create_order", order_fields(own, seller="eve", buyer="bob"))
    other = paid_order(http, new_id("P2P"))
    page.goto("/console")  # by keyboard alone: the token field has the focus, Enter signs in
    expect(page.get_by_label("Token")).to_be_focused()
    page.keyboard.type(TOKENS["eve"])
    page.keyboard.press("Enter")
    expect(page.get_by_role("heading", name="My orders")).to_be_visible()
    expect(page.locator(f"tr[data-order={own}]")).to_be_visible()
    expect(page.locator(f"tr[data-order={other}]")).to_have_count(0)
    for row in page.locator("tbody tr").all():
        assert "eve" in row.inner_text()
    expect(page.get_by_role("link", name="Queue")).to_have_count(0)

    page.goto(f"/console/#/orders/{other}")
    expect(page.locator(".problem .code")).to_have_text("not_found")
    page.goto(f"/console/#/orders/{own}")
    expect(page.locator("#order-state")).to_have_text("awaiting payment")
    expect(page.locator("button[data-command=open_appeal]")).to_have_count(0)  # not paid
    post(http, "bob", "mark_paid", {"order": own})
    page.reload()
    page.locator("button[data-command=open_appeal]").click()
    reasons = page.locator("form.command-form select[name=reason] option")
    expect(reasons).to_contain_text(["payment not received"])  # the seller's reasons only
    assert "seller not releasing" not in reasons.all_inner_texts()

    page.get_by_role("button", name="Sign out").click()
    expect(page.get_by_label("Token")).to_be_visible()
    assert page.evaluate("Object.keys(sessionStorage)") == []


def test_the_console_is_served_with_a_strict_content_security_policy(http: httpx.Client) -> None:
    moved = http.get("/console")
    assert moved.status_code == 307 and moved.headers["location"].endswith("/console/")
    index = http.get("/console/")
    assert index.status_code == 200 and "<title>escrow · CS console</title>" in index.text
    assert "default-src 'none'" in index.headers["content-security-policy"]
    script = http.get("/console/js/main.js")
    assert script.headers["content-type"].startswith("text/javascript")
    assert "/console" not in http.get("/openapi.json").text


def test_every_console_file_is_package_data() -> None:
    """A wheel ships only what pyproject's package-data names, so a file outside the patterns
    would be served from a checkout and missing from an install."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    patterns = project["tool"]["setuptools"]["package-data"]["escrow.commands.http.console"]
    files = [p.relative_to(STATIC.parent).as_posix() for p in STATIC.rglob("*") if p.is_file()]
    assert files and all(any(fnmatch.fnmatch(f, p) for p in patterns) for f in files)


def test_the_routes_the_console_reads(http: httpx.Client) -> None:
    assert http.get("/v1/me", headers=auth("carol")).json() == {"name": "carol", "role": "agent"}
    assert http.get("/v1/me").status_code == 401
    appeal = appeal_on_a_paid_order(http, "seller_not_releasing", "bob")
    allowed = http.get(f"/v1/appeals/{appeal}/allowed", headers=auth("carol")).json()
    assert allowed == {
        "appeal": appeal,
        "actor": "carol",
        "commands": ["add_evidence", "start_review"],
    }
    assert http.get(f"/v1/appeals/{appeal}/allowed", headers=auth("eve")).status_code == 404
    bob = http.get(f"/v1/appeals/{appeal}/allowed", headers=auth("bob")).json()["commands"]
    assert bob == ["add_evidence", "cancel_appeal"]
    log = http.get("/v1/events", params={"limit": 1}, headers=auth("platform")).json()
    everything = http.get("/v1/events", params={"limit": 1000}, headers=auth("platform")).json()
    assert log["head"] == everything["head"] >= everything["events"][-1]["position"]
