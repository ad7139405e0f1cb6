"""The HTTP service against the in-process API, measured in the same run.

A lifecycle is create_order → mark_paid → release. Over HTTP it is sent by a keep-alive client
(the standard library's) in a process of its own to a real `escrow serve` (uvicorn) on a fresh store; in process
it goes through `Escrow.execute` on a fresh store of the same kind. Both run in paired rounds
so that drift of the machine hits them alike; the ratio (HTTP / in process) is taken within
each round and the median kept. p50/p99 are per command, over HTTP, in milliseconds.
PostgreSQL is measured again with `--workers 2`, driven by two client processes at once.

    .venv/bin/python scripts/bench_http.py [--lifecycles N] [--rounds R] [--json]
        [--stores sqlite,postgresql] [--postgres URL]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
from bench_engine import PG, Stores

from escrow.commands.api import Escrow
from escrow.commands.models import CreateOrder, MarkPaid, Release

COMMANDS = ("create_order", "mark_paid", "release")
KEYS = """\
keys:
  tok-platform: {name: exchange, role: platform}
  tok-alice: {name: alice, role: trader}
  tok-bob: {name: bob, role: trader}
"""
TOKENS = {"create_order": "tok-platform", "mark_paid": "tok-bob", "release": "tok-alice"}
ESCROW = str(Path(sys.executable).parent / "escrow")


def order(ref: str) -> dict[str, Any]:
    return dict(
        order=ref, seller="alice", buyer="bob", asset="USDT", amount="500", price="0.92",
        fiat="EUR", payment_method="bank_transfer",
    )  # fmt: skip


class Connection:
    """One keep-alive HTTP/1.1 connection, on a bare socket: a request is written in one
    `sendall` and its answer read by its Content-Length. The standard library's client spends
    about 0.25 ms of its own per request parsing headers with the email package; a Go or Java
    backend's client spends a few microseconds. What is measured is the service, not a client
    library."""

    def __init__(self, url: str) -> None:
        address = urlsplit(url)
        self.host = f"{address.hostname}:{address.port}"
        self.sock = socket.create_connection((address.hostname, address.port), timeout=60)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.pending = b""

    def request(
        self, method: str, path: str, token: str = "", body: bytes = b""
    ) -> tuple[int, bytes]:
        head = f"{method} {path} HTTP/1.1\r\nHost: {self.host}\r\n"
        if token:
            head += f"Authorization: Bearer {token}\r\n"
        if body:
            head += f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
        self.sock.sendall(head.encode() + b"\r\n" + body)
        while b"\r\n\r\n" not in self.pending:
            self.pending += self._read()
        header, _, rest = self.pending.partition(b"\r\n\r\n")
        lines = header.split(b"\r\n")
        status = int(lines[0].split(b" ", 2)[1])
        fields = dict(line.split(b":", 1) for line in lines[1:])
        length = int({k.lower(): v for k, v in fields.items()}[b"content-length"])
        while len(rest) < length:
            rest += self._read()
        self.pending = rest[length:]
        return status, rest[:length]

    def _read(self) -> bytes:
        chunk = self.sock.recv(65536)
        if not chunk:
            raise ConnectionError("the server closed the connection")
        return chunk

    def close(self) -> None:
        self.sock.close()


def client(url: str, n: int, prefix: str) -> dict[str, Any]:
    """One client process: `n` lifecycles over one keep-alive connection."""
    latencies: dict[str, list[float]] = {c: [] for c in COMMANDS}
    http = Connection(url)
    try:
        http.request("GET", "/healthz")
        started, wall = time.perf_counter(), time.time()
        for i in range(n):
            ref = f"{prefix}{i}"
            for name, body in zip(
                COMMANDS, (order(ref), {"order": ref}, {"order": ref}), strict=True
            ):
                t = time.perf_counter()
                status, text = http.request(
                    "POST", f"/v1/commands/{name}", TOKENS[name], json.dumps(body).encode()
                )
                latencies[name].append((time.perf_counter() - t) * 1000)
                if status >= 300:
                    raise SystemExit(f"{name}: {status} {text.decode()}")
        seconds = time.perf_counter() - started
    finally:
        http.close()
    return {"seconds": seconds, "start": wall, "end": wall + seconds, "latencies": latencies}


def in_process(url: str, n: int) -> float:
    with Escrow(url) as engine:
        started = time.perf_counter()
        for i in range(n):
            ref = f"o{i}"
            engine.execute(CreateOrder.model_validate(order(ref)))
            engine.execute(MarkPaid(order=ref, by="bob"))
            engine.execute(Release(order=ref, by="alice"))
        return n / (time.perf_counter() - started)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def over_http(url: str, n: int, workers: int, folder: Path) -> dict[str, Any]:
    """Start a server on `url`, drive it from `workers` client processes, stop it."""
    keys = folder / "keys.yaml"
    keys.write_text(KEYS)
    port = free_port()
    server = subprocess.Popen(
        [ESCROW, "--store", url, "serve", "--keys", str(keys), "--port", str(port),
         "--workers", str(workers)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{base}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if server.poll() is not None or time.monotonic() > deadline:
                raise SystemExit("escrow serve did not start")
            time.sleep(0.1)
        share = n // workers
        clients = [
            subprocess.Popen(
                [
                    sys.executable,
                    __file__,
                    "--client",
                    base,
                    "--lifecycles",
                    str(share),
                    "--prefix",
                    f"w{k}-",
                ],
                stdout=subprocess.PIPE,
                text=True,
            )
            for k in range(workers)
        ]
        results = [json.loads(c.communicate()[0]) for c in clients]
        if any(c.returncode for c in clients):
            raise SystemExit("a client failed")
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(30)
    latencies = {c: [ms for r in results for ms in r["latencies"][c]] for c in COMMANDS}
    # from the first client's first request to the last one's last answer
    seconds = max(r["end"] for r in results) - min(r["start"] for r in results)
    return {"rate": share * workers / seconds, "latencies": latencies}


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def measure(stores: Stores, backend: str, n: int, rounds: int, workers: int) -> dict[str, Any]:
    ratios, http_rates, local_rates = [], [], []
    latencies: dict[str, list[float]] = {c: [] for c in COMMANDS}
    for _ in range(rounds):
        local = in_process(stores.url(backend), n)
        with tempfile.TemporaryDirectory() as folder:
            remote = over_http(stores.url(backend), n, workers, Path(folder))
        ratios.append(remote["rate"] / local)
        http_rates.append(remote["rate"])
        local_rates.append(local)
        for c in COMMANDS:
            latencies[c] += remote["latencies"][c]
    return {
        "http": round(statistics.median(http_rates), 1),
        "in_process": round(statistics.median(local_rates), 1),
        "ratio": round(statistics.median(ratios), 3),
        "p50_ms": {c: round(percentile(latencies[c], 0.5), 2) for c in COMMANDS},
        "p99_ms": {c: round(percentile(latencies[c], 0.99), 2) for c in COMMANDS},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lifecycles", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--stores", default="sqlite,postgresql")
    parser.add_argument("--postgres", default=PG, help="Server (and schema prefix) to use.")
    parser.add_argument("--json", action="store_true", help="Print one JSON object.")
    parser.add_argument("--client", metavar="URL", help=argparse.SUPPRESS)
    parser.add_argument("--prefix", default="o", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.client:
        print(json.dumps(client(args.client, args.lifecycles, args.prefix)))
        return
    stores = Stores(args.postgres)
    result: dict[str, Any] = {}
    try:
        for backend in args.stores.split(","):
            result[backend] = measure(stores, backend, args.lifecycles, args.rounds, 1)
            if backend == "postgresql":
                result[backend]["workers_2"] = measure(
                    stores, backend, args.lifecycles, args.rounds, 2
                )
    finally:
        stores.close()
    if args.json:
        print(json.dumps(result))
        return
    for backend, figures in result.items():
        for label, f in ((backend, figures), (f"{backend} workers 2", figures.get("workers_2"))):
            if f:
                print(f"{label:24} http {f['http']:8.1f}/s  in process {f['in_process']:8.1f}/s  "
                      f"ratio {f['ratio']:.2f}  p50 {f['p50_ms']}  p99 {f['p99_ms']}")  # fmt: skip


if __name__ == "__main__":
    main()
