"""The one hierarchy of refusals.

Every refusal carries the stable `code` of scenarios.md (callers and scenario files match on
it) and, where a rule decided, the rule ID of rules.md, so a refusal can be traced to the
rule that caused it.
"""

from __future__ import annotations

# Codes in the order scenarios.md checks them when several apply.
PRECEDENCE: tuple[str, ...] = (
    "validation_error",
    "not_found",
    "duplicate_id",
    "not_authorized",
    "trader_suspended",
    "release_blocked_by_appeal",
    "appeal_already_open",
    "issue_already_resolved",
    "appeal_not_allowed",
    "deadline_passed",
    "price_deviation",
    "refund_pending",
    "amount_exceeds_limit",
    "invalid_state",
)


class EscrowError(Exception):
    """A command was refused; nothing was recorded."""

    code: str = "invalid_state"

    def __init__(self, message: str, rule: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.rule = rule

    def __str__(self) -> str:
        rule = f" [{self.rule}]" if self.rule else ""
        return f"{self.code}{rule}: {self.message}"


class ValidationError(EscrowError):
    code = "validation_error"


class NotFound(EscrowError):
    code = "not_found"


class DuplicateId(EscrowError):
    code = "duplicate_id"


class NotAuthorized(EscrowError):
    code = "not_authorized"


class TraderSuspended(EscrowError):
    code = "trader_suspended"


class ReleaseBlockedByAppeal(EscrowError):
    code = "release_blocked_by_appeal"


class AppealAlreadyOpen(EscrowError):
    code = "appeal_already_open"


class IssueAlreadyResolved(EscrowError):
    code = "issue_already_resolved"


class AppealNotAllowed(EscrowError):
    code = "appeal_not_allowed"


class DeadlinePassed(EscrowError):
    code = "deadline_passed"


class PriceDeviation(EscrowError):
    code = "price_deviation"


class RefundPending(EscrowError):
    code = "refund_pending"


class AmountExceedsLimit(EscrowError):
    code = "amount_exceeds_limit"


class InvalidState(EscrowError):
    code = "invalid_state"


class ConcurrencyConflict(EscrowError):
    """Raised only when bounded reload-and-retry kept losing races; nothing was recorded.

    Not a refusal by the rules (the same command sent again may well be accepted), so it has
    a code of its own, outside PRECEDENCE: a caller retries on it, never on `invalid_state`."""

    code = "concurrency_conflict"


class EngineClosed(EscrowError):
    """A call on an engine after its `close()`: its connections are gone, nothing ran.

    A programming error of the caller, told apart from a store that went away (StoreError,
    which a later call may get past): a closed engine never opens again."""

    code = "engine_closed"


class StoreError(EscrowError):
    """The store could not be used, so the command or query did not run: nothing was recorded.

    Not a refusal by the rules: the same command may succeed once the store is back, which is
    why callers can tell the two apart by class (an HTTP layer answers 503, not 4xx) and why
    these codes are not in PRECEDENCE. Messages name the store with its password masked.
    """

    code = "store_error"


class StoreUnreachable(StoreError):
    """No connection: the server is down or refuses us (address, TLS, authentication,
    timeout), or the SQLite file is locked by another process beyond the lock timeout."""

    code = "store_unreachable"


class StoreUnwritable(StoreError):
    """The store cannot be created or written: a missing folder, no permission, a read-only
    file system or database, a full disk."""

    code = "store_unwritable"


class StoreNotFound(StoreError):
    """A command that only reads was pointed at a store that does not exist (a missing SQLite
    file, a PostgreSQL schema without the escrow tables); nothing was created."""

    code = "store_not_found"


class NotAnEscrowStore(StoreError):
    """The store holds something else: a file that is not a SQLite database, a database of
    another program, or tables named like ours with another shape."""

    code = "not_an_escrow_store"


class StoreConnectionLost(StoreError):
    """The connection broke during a command or query; its transaction did not commit."""

    code = "store_connection_lost"


ERROR_CLASSES: dict[str, type[EscrowError]] = {
    cls.code: cls
    for cls in (
        ValidationError,
        NotFound,
        DuplicateId,
        NotAuthorized,
        TraderSuspended,
        ReleaseBlockedByAppeal,
        AppealAlreadyOpen,
        IssueAlreadyResolved,
        AppealNotAllowed,
        DeadlinePassed,
        PriceDeviation,
        RefundPending,
        AmountExceedsLimit,
        InvalidState,
    )
}


def refusal(code: str, message: str, rule: str | None = None) -> EscrowError:
    return ERROR_CLASSES[code](message, rule)
