"""What a verify pass found, and the checks that need every stream at once.

Each process of a pass fills a `Partial`; the partials merge, and `finish` runs the checks across
streams (a sanction and the appeal that caused it, an S1 and the refusal it answers) and the
ledger comparison on the merged whole, since no one process sees every stream.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Context, Decimal
from typing import Any

from escrow.commands.audit.history import plain
from escrow.vocabulary import SUSPEND_BUYER_ON_OPENING, SanctionKind

EXACT = Context(prec=200)  # per-asset sums: 15 + 18 digits exceed the default 28
MAX_FINDINGS = 10_000  # kept in full; beyond, only counted (a wrecked store stays printable)
ZERO = Decimal(0)
S2 = SanctionKind.TRADING_SUSPENSION_24H


@dataclass(frozen=True)
class Finding:
    """One violation: where (stream, version) and which rule, in words an auditor reads."""

    kind: str
    ref: str
    stream: str
    version: int | None
    rule: str
    message: str

    def line(self) -> str:
        at = f" v{self.version}" if self.version is not None else ""
        return f"{self.kind} {self.ref or self.stream}{at} [{self.rule}] {self.message}"

    def as_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "ref": self.ref,
            "stream": self.stream,
            "version": self.version,
            "rule": self.rule,
            "message": self.message,
        }


@dataclass
class Partial:
    """What one process found, and what the checks across streams need from it."""

    events: int = 0
    streams: int = 0
    last_id: int = 0
    findings: list[Finding] = field(default_factory=list)
    more_findings: int = 0
    appeals: dict[str, tuple[str, str, str]] = field(
        default_factory=dict
    )  # ref: buyer, seller, reason
    links: list[tuple[str, str, int, str, str | None]] = field(default_factory=list)  # sanctions
    refusals: dict[tuple[str, str], str] = field(default_factory=dict)  # (seller, at): appeal
    s1: dict[tuple[str, str], tuple[str, int, str | None]] = field(default_factory=dict)
    assets: dict[str, list[Decimal]] = field(default_factory=dict)  # locked, released, returned
    peak_rss_kb: int = 0

    def merge(self, other: Partial) -> None:
        self.events += other.events
        self.streams += other.streams
        self.last_id = max(self.last_id, other.last_id)
        room = max(MAX_FINDINGS - len(self.findings), 0)
        self.findings += other.findings[:room]
        self.more_findings += other.more_findings + max(0, len(other.findings) - room)
        self.appeals.update(other.appeals)
        self.links += other.links
        self.refusals.update(other.refusals)
        self.s1.update(other.s1)
        for asset, sums in other.assets.items():
            mine = self.assets.setdefault(asset, [ZERO, ZERO, ZERO])
            for i in range(3):
                mine[i] = EXACT.add(mine[i], sums[i])
        self.peak_rss_kb += other.peak_rss_kb


@dataclass
class Report:
    events: int
    streams: int
    findings: list[Finding]
    more_findings: int
    assets: dict[str, dict[str, Decimal]]
    ledger_checked: bool
    seal_checked: bool
    peak_rss_kb: int = 0

    @property
    def clean(self) -> bool:
        return not self.findings and not self.more_findings

    @property
    def count(self) -> int:
        return len(self.findings) + self.more_findings

    def as_json(self) -> dict[str, Any]:
        return dict(
            plain(
                {
                    "clean": self.clean,
                    "events": self.events,
                    "streams": self.streams,
                    "violations": [f.as_json() for f in self.findings],
                    "more_violations": self.more_findings,
                    "assets": self.assets,
                    "ledger_checked": self.ledger_checked,
                    "seal_checked": self.seal_checked,
                }
            )
        )


def finish(
    out: Partial,
    ledger: tuple[int, dict[str, tuple[Decimal, Decimal, Decimal]]] | None,
    seal_checked: bool,
) -> Report:
    """The checks across streams, on what every process gathered, and the ledger."""
    extra: list[Finding] = []

    def find(trader: str, stream: str, version: int, rule: str, message: str) -> None:
        extra.append(Finding("trader", trader, stream, version, rule, message))

    for trader, stream, version, kind, ref in out.links:
        appeal = out.appeals.get(ref) if ref is not None else None
        if ref is not None and appeal is None:
            rule = "C4" if kind == S2 else "S1"
            find(trader, stream, version, rule, f"{kind} names appeal {ref}, which does not exist")
        elif kind == S2:
            if appeal is None:
                find(trader, stream, version, "C4", "S2 applied without the C4 appeal causing it")
            elif appeal[2] not in SUSPEND_BUYER_ON_OPENING:
                find(
                    trader,
                    stream,
                    version,
                    "C4",
                    f"S2 from appeal {ref}, a {appeal[2]} appeal: only a C4 or C6 appeal causes it",
                )
            elif trader != appeal[0]:
                find(trader, stream, version, "C4", f"S2 on {trader}, not the buyer of {ref}")
        elif appeal is not None and trader not in appeal[:2]:
            find(trader, stream, version, "S1", f"{kind} names appeal {ref}, where it is no party")
    for (seller, at), ref in out.refusals.items():
        s1 = out.s1.get((seller, at))
        if s1 is not None and s1[2] != ref:
            find(
                seller,
                s1[0],
                s1[1],
                "S1",
                f"S1 recorded on the refund refused in appeal {ref} names {s1[2] or 'no appeal'}",
            )
    assets = {
        asset: {
            "locked": sums[0],
            "released": sums[1],
            "returned": sums[2],
            "in_escrow": EXACT.subtract(EXACT.subtract(sums[0], sums[1]), sums[2]) or ZERO,
        }
        for asset, sums in sorted(out.assets.items())
    }
    ledger_checked = ledger is not None and ledger[0] == out.last_id
    if ledger is not None and ledger_checked:
        for asset in sorted(assets.keys() | ledger[1].keys()):
            mine = assets.get(asset)
            events = (
                (mine["in_escrow"], mine["released"], mine["returned"]) if mine else (ZERO,) * 3
            )
            read = ledger[1].get(asset, (ZERO,) * 3)
            if read != events:
                extra.append(
                    Finding(
                        "ledger",
                        asset,
                        "",
                        None,
                        "escrow",
                        f"the ledger read model says in escrow/released/returned "
                        f"{'/'.join(map(str, read))}; the events say {'/'.join(map(str, events))}",
                    )
                )
    room = max(MAX_FINDINGS - len(out.findings), 0)
    return Report(
        events=out.events,
        streams=out.streams,
        findings=out.findings + extra[:room],
        more_findings=out.more_findings + max(0, len(extra) - room),
        assets=assets,
        ledger_checked=ledger_checked,
        seal_checked=seal_checked,
        peak_rss_kb=out.peak_rss_kb,
    )
