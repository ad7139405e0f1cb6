"""`escrow audit verify`: one streaming pass over a whole store's log.

Per stored event: its version follows its stream's last one, and its stored chain equals
sha256(previous chain, topic, stored fields), recomputed from the stored JSON (decoded by the
application's transcoder, never upcast); then the invariants of rules.md for its topic. Per
stream only a short list of fields is kept, so memory follows the number of streams, not of
events. Checks across streams (a sanction and its appeal) are gathered and done at the end.

With several jobs, each process takes the streams of one partition (by the last hex digit of the
stream id, filtered in SQL), so every stream is still checked in order by one process.
"""

from __future__ import annotations

import multiprocessing
import os
import queue
import resource
import traceback
from collections.abc import Callable, Iterable
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

from escrow.commands.audit.history import History, kind_of, seal_digest
from escrow.commands.audit.invariants import CHAIN, OTHER, Invariants, V
from escrow.commands.audit.report import Finding, Partial, Report, finish
from escrow.errors import EscrowError
from escrow.faults import store_faults
from escrow.log import Row, partition_of
from escrow.recording import stored_digest
from escrow.store import parse_store_url

CLOCK_SKEW = 1.0  # seconds: how far two processes' clocks may disagree (NTP keeps far closer)


def _seconds(span: float) -> str:
    return str(timedelta(seconds=round(span, 6)))


def _raw(chain: str) -> bytes:
    """A chain digest as its 32 bytes (half the memory of its hex text, kept per stream)."""
    try:
        return bytes.fromhex(chain)
    except (ValueError, TypeError):
        return str(chain).encode()  # not a digest at all: reported, and it links to nothing


class Verifier(Invariants):
    def __init__(self, history: History, heads: dict[str, tuple[int, str]] | None = None):
        super().__init__()
        self.history = history
        self.heads = dict(heads or {})
        self.stamped: dict[str, float] = {}  # per stream, the latest time recorded (epoch s)
        self.latest = float("-inf")  # the latest time recorded in the log so far

    # --- the pass -------------------------------------------------------------------------

    def feed(self, rows: Iterable[Row]) -> None:
        """Check rows in log order; the hot loop of `verify` (a million events per audit)."""
        streams, rules, fields_of, out = (
            self.streams,
            self.rules,
            self.history.hashed_fields,
            self.out,
        )
        heads = self.heads
        for nid, stream, version, topic, state in rows:
            out.events += 1
            out.last_id = nid
            try:
                f = fields_of(state, topic)
                stored = f["chain"]
                at = f["timestamp"]
            except Exception as e:
                self.find(stream, version, "chain", f"stored event cannot be read: {e!r}")
                continue
            self._check_time(stream, version, at)
            s = streams.get(stream)
            expected, previous = (1, "") if s is None else (s[V] + 1, s[CHAIN].hex())
            if version == expected:
                if stored_digest(previous, topic, stream, version, f) != stored:
                    self.find(
                        stream,
                        version,
                        "chain",
                        "does not match its chain digest: its content was changed, or it was "
                        "forged and inserted",
                    )
            else:
                accepted = self._out_of_sequence(
                    stream, version, expected, previous, topic, f, stored
                )
                if accepted is None:
                    continue
                version = accepted
            chain = _raw(stored)
            if s is None:
                s = streams[stream] = [version, chain, OTHER]
            else:
                s[V], s[CHAIN] = version, chain
            if heads and stream in heads:
                self._check_head(stream, version, stored)
            handle = rules.get(topic)
            if handle is not None:
                try:
                    handle(s, stream, version, at, f)
                except (KeyError, TypeError, IndexError, ValueError, ArithmeticError) as e:
                    self.find(stream, version, "chain", f"fields unreadable: {e!r}")

    def _check_time(self, stream: str, version: int, at: str) -> None:
        """Recorded time never goes back in a stream; in the log, processes' clocks may differ
        by up to CLOCK_SKEW, beyond which a step back is a fault (a clock run ahead, or
        history rewritten)."""
        try:
            moment = datetime.fromisoformat(at).timestamp()
        except (TypeError, ValueError):
            self.find(stream, version, "time", f"recorded at an unreadable time {at!r}")
            return
        before = self.stamped.get(stream)
        if before is not None and moment < before:
            self.find(
                stream,
                version,
                "time",
                f"recorded at {at}, {_seconds(before - moment)} before the event before it in "
                "its stream",
            )
        self.stamped[stream] = moment if before is None else max(before, moment)
        if moment < self.latest - CLOCK_SKEW:
            self.find(
                stream,
                version,
                "time",
                f"recorded at {at}, {_seconds(self.latest - moment)} before an event committed "
                "earlier in the log",
            )
        self.latest = max(self.latest, moment)

    def _out_of_sequence(
        self,
        stream: str,
        version: int,
        expected: int,
        previous: str,
        topic: str,
        f: dict[str, Any],
        stored: str,
    ) -> int | None:
        """A version that does not follow the last: say what happened, and the version to
        take it as (None: skip it)."""
        if stored_digest(previous, topic, stream, expected, f) == stored:
            self.find(
                stream,
                version,
                "chain",
                f"holds the event recorded as version {expected}: stored versions were changed "
                "(events reordered or swapped)",
            )
            return expected
        if version > expected:
            gap = str(expected) if version == expected + 1 else f"{expected}–{version - 1}"
            self.find(stream, version, "chain", f"version {gap} missing before it: removed")
            return version
        self.find(
            stream,
            version,
            "chain",
            f"stored after version {expected - 1} of its stream: inserted later, or reordered",
        )
        return None

    def _check_head(self, stream: str, version: int, stored: str) -> None:
        sealed_version, sealed_chain = self.heads[stream]
        if version == sealed_version:
            del self.heads[stream]
            if stored != sealed_chain:
                self.find(
                    stream,
                    version,
                    "seal",
                    "chain differs from the sealed head: history up to here was rewritten "
                    "after the seal",
                )

    # --- end of the pass ------------------------------------------------------------------

    def partial(self) -> Partial:
        """Sealed heads never reached become findings; findings get their stream's name."""
        for stream, (version, _chain) in self.heads.items():
            s = self.streams.get(stream)
            if s is None:
                message = "sealed stream no longer in the store: removed after the seal"
            elif s[V] < version:
                message = (
                    f"sealed at version {version}, the store ends at version {s[V]}: "
                    "events removed after the seal"
                )
            else:
                message = "sealed version missing from the store"
            self.find(stream, version, "seal", message)
        self.heads = {}
        names: dict[str, tuple[str, str]] = {}
        for i, found in enumerate(self.out.findings):
            if found.stream not in names:
                names[found.stream] = self._name(found.stream)
            kind, ref = names[found.stream]
            self.out.findings[i] = Finding(
                kind, ref, found.stream, found.version, found.rule, found.message
            )
        self.out.streams = len(self.streams)
        self.out.peak_rss_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return self.out

    def _name(self, stream: str) -> tuple[str, str]:
        """Kind and ref of a stream with findings, from its first stored event."""
        try:
            events = self.history.stream(UUID(stream))
        except Exception:  # an unreadable first event was reported already
            events = []
        if events:
            return kind_of(events[0][1]), str(events[0][2].get("ref", ""))
        return "stream", ""


def sealed_heads(sealed: dict[str, Any]) -> tuple[dict[str, tuple[int, str]], list[Finding]]:
    """The heads a seal lists, and a finding if its own digest does not match them."""
    heads = {s["stream"]: (int(s["version"]), s["chain"]) for s in sealed["streams"]}
    problems = []
    if seal_digest((k, v, c) for k, (v, c) in heads.items()) != sealed.get("digest"):
        problems.append(
            Finding("seal", "", "", None, "seal", "the seal's digest does not match its heads")
        )
    return heads, problems


def verify(
    history: History,
    *,
    sealed: dict[str, Any] | None = None,
    progress: Callable[[int], None] | None = None,
) -> Report:
    """Verify a whole store in this process."""
    heads, problems = sealed_heads(sealed) if sealed else ({}, [])
    verifier = Verifier(history, heads)
    for page in history.pages():
        verifier.feed(page)
        if progress:
            progress(len(page))
    out = verifier.partial()
    out.findings = problems + out.findings
    return finish(out, history.ledger(), sealed is not None)


def _worker(
    url: str, part: tuple[int, int], heads: dict[str, tuple[int, str]], results: Any
) -> None:
    try:
        with store_faults(parse_store_url(url)), History.open(url) as history:
            verifier = Verifier(history, heads)
            for page in history.pages(part=part):
                verifier.feed(page)
                results.put(("progress", len(page)))
            out = verifier.partial()
        verifier.streams = {}  # per-stream state stays here: only what crosses streams travels
        results.put(("done", out))
    except EscrowError as e:  # the store's own fault, already in one line
        results.put(("error", e.message))
    except BaseException:
        results.put(("error", traceback.format_exc()))


def verify_store(
    url: str,
    *,
    sealed: dict[str, Any] | None = None,
    jobs: int = 1,
    progress: Callable[[int], None] | None = None,
) -> Report:
    """Verify the store at `url`. With `jobs` > 1 this process takes one partition of the
    streams and forks a worker per other partition; the checks across streams then run on
    what all of them gathered. A store fault is a StoreError, from here or from a worker."""
    with store_faults(parse_store_url(url)):
        return _verify_store(url, sealed, jobs, progress)


def _verify_store(
    url: str,
    sealed: dict[str, Any] | None,
    jobs: int,
    progress: Callable[[int], None] | None,
) -> Report:
    if jobs <= 1:
        with History.open(url) as history:
            return verify(history, sealed=sealed, progress=progress)
    heads, problems = sealed_heads(sealed) if sealed else ({}, [])
    mine = [{s: h for s, h in heads.items() if partition_of(s, jobs) == k} for k in range(jobs)]
    methods = multiprocessing.get_all_start_methods()
    context: Any = multiprocessing.get_context("fork" if "fork" in methods else "spawn")
    results = context.Queue()
    # Workers start before this process opens any connection (no pool thread is forked).
    workers = [
        context.Process(target=_worker, args=(url, (k, jobs), mine[k], results), daemon=True)
        for k in range(1, jobs)
    ]
    for w in workers:
        w.start()
    merged = Partial()
    waiting = len(workers)

    def drain(block: bool) -> None:
        nonlocal waiting
        while waiting:
            try:
                kind, payload = results.get(timeout=1.0) if block else results.get_nowait()
            except queue.Empty:
                if block and not any(w.is_alive() for w in workers):
                    raise RuntimeError("a verify worker died") from None
                if not block:
                    return
                continue
            if kind == "progress":
                if progress:
                    progress(payload)
            elif kind == "done":
                merged.merge(payload)
                waiting -= 1
            else:
                raise RuntimeError(f"a verify worker failed:\n{payload}")

    try:
        with History.open(url) as history:
            verifier = Verifier(history, mine[0])
            for page in history.pages(part=(0, jobs)):
                verifier.feed(page)
                if progress:
                    progress(len(page))
                drain(block=False)
            out = verifier.partial()
            verifier.streams = {}
            ledger = history.ledger()
        drain(block=True)
    finally:
        for w in workers:
            w.join(timeout=10)
            if w.is_alive():
                w.kill()
    merged.merge(out)
    merged.findings = problems + merged.findings
    return finish(merged, ledger, sealed is not None)


def default_jobs(events: int) -> int:
    """A second process pays off on large stores; one per core, at most two."""
    return min(os.cpu_count() or 1, 2) if events >= 20_000 else 1
