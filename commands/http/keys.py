"""The keys file: which bearer token is which principal, and what a principal may read.

Tokens are kept only as SHA-256 digests and compared with `hmac.compare_digest` against every
entry (no early exit), so neither the comparison nor the lookup time tells a caller how close
a guessed token came. Nothing here ever logs a token.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, get_args

import yaml

Role = Literal["platform", "agent", "supervisor", "trader"]
ROLES: tuple[str, ...] = get_args(Role)
STAFF = frozenset({"agent", "supervisor"})  # customer service, appointed in the store at start


@dataclass(frozen=True)
class Principal:
    name: str
    role: str

    @property
    def is_trader(self) -> bool:
        return self.role == "trader"

    def sees_parties(self, *parties: str) -> bool:
        """A trader sees what it is a party to; everyone else sees everything."""
        return not self.is_trader or self.name in parties


class KeysError(ValueError):
    """The keys file cannot be used; the message says where and why."""


class Keys:
    def __init__(self, principals: dict[str, Principal]) -> None:
        self._entries = [(_digest(token), p) for token, p in principals.items()]

    @classmethod
    def load(cls, path: str | Path) -> Keys:
        try:
            data = yaml.safe_load(Path(path).read_text())
        except (OSError, yaml.YAMLError) as e:
            raise KeysError(f"cannot read keys file {path}: {e}") from None
        keys = data.get("keys") if isinstance(data, dict) else None
        if not isinstance(keys, dict) or not keys:
            raise KeysError(f"{path}: expected a mapping `keys:` of token -> {{name, role}}")
        principals = {}
        for n, (token, entry) in enumerate(keys.items(), 1):
            principals[str(token)] = _principal(path, n, token, entry)
        return cls(principals)

    def find(self, token: str) -> Principal | None:
        wanted = _digest(token)
        found = None
        for digest, principal in self._entries:
            if hmac.compare_digest(digest, wanted):
                found = principal
        return found

    @property
    def agents(self) -> frozenset[str]:
        """Agents and supervisors: appointed in the store when the server opens it."""
        return frozenset(p.name for _, p in self._entries if p.role in STAFF)

    @property
    def supervisors(self) -> frozenset[str]:
        """The agents who also handle complaints (E3)."""
        return frozenset(p.name for _, p in self._entries if p.role == "supervisor")


def _principal(path: str | Path, n: int, token: Any, entry: Any) -> Principal:
    where = f"{path}: key #{n}"  # never the token itself: the message may end up in a log
    if not isinstance(token, str) or not token:
        raise KeysError(f"{where}: a token is a non-empty string")
    if not isinstance(entry, dict) or set(entry) != {"name", "role"}:
        raise KeysError(f"{where}: expected {{name: ..., role: ...}}")
    if entry["role"] not in ROLES:
        raise KeysError(f"{where}: role is one of {', '.join(ROLES)}")
    if not isinstance(entry["name"], str) or not entry["name"]:
        raise KeysError(f"{where}: name is a non-empty string")
    return Principal(entry["name"], entry["role"])


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8", "surrogateescape")).digest()
