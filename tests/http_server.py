"""A real `escrow serve` process for the HTTP tests: a free port, waited for on /healthz,
killed at teardown; and a keys file with one principal of every role."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.helpers import order_fields
from tests.test_projections import fresh_store

KEYS = """\
keys:
  tok-platform-1: {name: exchange, role: platform}
  tok-carol:      {name: carol, role: agent}
  tok-sam:        {name: sam, role: supervisor}
  tok-alice:      {name: alice, role: trader}
  tok-bob:        {name: bob, role: trader}
  tok-eve:        {name: eve, role: trader}
"""
TOKENS = {
    "platform": "tok-platform-1",
    "carol": "tok-carol",
    "sam": "tok-sam",
    "alice": "tok-alice",
    "bob": "tok-bob",
    "eve": "tok-eve",
}
ESCROW = str(Path(sys.executable).parent / "escrow")


def auth(who: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {TOKENS[who]}"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Server:
    def __init__(self, url: str, log: Path) -> None:
        self.url = url
        self.log = log

    def client(self, who: str | None = None, **kw: Any) -> httpx.Client:
        return httpx.Client(base_url=self.url, headers=auth(who) if who else None, timeout=30, **kw)


@contextmanager
def serve(
    store: str, folder: Path, *args: str, env: dict[str, str] | None = None
) -> Iterator[Server]:
    keys = folder / "keys.yaml"
    keys.write_text(KEYS)
    port = free_port()
    log = folder / f"serve-{port}.log"
    with log.open("w") as out:
        process = subprocess.Popen(
            [ESCROW, "--store", store, "serve", "--keys", str(keys), "--port", str(port), *args],
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env={**os.environ, **(env or {})},
        )
    url = f"http://127.0.0.1:{port}"
    with running(process, url, log):
        yield Server(url, log)


@contextmanager
def running(process: subprocess.Popen[bytes], url: str, log: Path) -> Iterator[None]:
    """A started `escrow serve` (own session), once /healthz answers; killed afterwards."""
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"escrow serve did not start:\n{log.read_text()}")
            time.sleep(0.05)
        yield
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


@contextmanager
def server_on(kind: str, folder: Path, *args: str) -> Iterator[Server]:
    """A server on a fresh store of this kind (`sqlite` or `postgresql`)."""
    with fresh_store(kind) as url, serve(url, folder, *args) as server:
        yield server


@pytest.fixture(scope="module", params=["sqlite", "postgresql"], name="server")
def server_per_store(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    """One server per store kind, shared by a module's tests (import it to use it)."""
    with server_on(request.param, tmp_path_factory.mktemp(request.param)) as running:
        yield running


def paid_order(http: httpx.Client, order: str | None = None) -> str:
    """A new order, created by the platform and marked paid by its buyer (bob)."""
    order = order or f"o-{uuid.uuid4().hex[:10]}"
    created = http.post(
        "/v1/commands/create_order", json=order_fields(order), headers=auth("platform")
    )
    assert created.status_code == 201, created.text
    paid = http.post("/v1/commands/mark_paid", json={"order": order}, headers=auth("bob"))
    assert paid.status_code == 200, paid.text
    return order
