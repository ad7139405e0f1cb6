"""The scenario file format of scenarios.md: its schema and a loader whose every complaint names
the file, the step and the field.

A scenario file is a contract read by compliance staff and auditors, so a mistake in the file
itself (an unknown command, a float amount, a bad duration, an expectation field that does not
exist) must stop it from running at all, rather than run something other than what was meant.
A command whose *fields* are wrong is different: refusing it is the engine's job, and a step
may expect exactly that refusal (`error: validation_error`). Without such an `error:` the step
could never run as written, so it is reported as a broken file too.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal

import pydantic
import yaml
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, StrictBool, StrictStr
from pydantic_core import ErrorDetails

from escrow.clock import LATEST, bounded
from escrow.commands.models import COMMANDS, InvalidCommand, Ref, parse_command
from escrow.durations import bounded_duration
from escrow.errors import PRECEDENCE, EscrowError
from escrow.policy import Policy
from escrow.validated import InvalidFields
from escrow.vocabulary import (
    AppealState,
    ClawbackState,
    ComplaintState,
    OrderState,
    RefundState,
    SanctionKind,
)

RULE_IDS: tuple[str, ...] = (
    *(f"O{i}" for i in range(1, 8)),
    *(f"A{i}" for i in range(1, 10)),
    "B1",
    "B1a",
    *(f"B{i}" for i in range(2, 6)),
    *(f"C{i}" for i in range(1, 7)),
    *(f"R{i}" for i in range(1, 8)),
    *(f"S{i}" for i in range(1, 5)),
    *(f"K{i}" for i in range(1, 6)),
    *(f"E{i}" for i in range(1, 7)),
)
DEFAULT_START = datetime(2026, 1, 1, tzinfo=UTC)
ERROR_CODES: tuple[str, ...] = (*PRECEDENCE, "any")
STEP_WORDS = ("wait", "expect")
TARGETS = ("order", "appeal", "trader", "ledger", "complaint")
# Every command field read as money; a YAML float there has already lost its exact value.
AMOUNT_FIELDS = frozenset({"amount", "price", "reference_price", "paid_amount", "compensation"})


# --- problems -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Problem:
    """One reason a file is not a valid scenario."""

    file: str
    message: str
    step: int | None = None
    field: str | None = None
    line: int | None = None

    def where(self) -> str:
        parts = [f"{self.file}:{self.line}" if self.line else self.file]
        if self.step is not None:
            parts.append(f"step {self.step}")
        if self.field:
            parts.append(f"field {self.field}")
        return ", ".join(parts)

    def __str__(self) -> str:
        return f"{self.where()}: {self.message}"

    def as_dict(self) -> dict[str, Any]:
        return {
            "file": self.file,
            "line": self.line,
            "step": self.step,
            "field": self.field,
            "message": self.message,
        }


class ScenarioFileError(Exception):
    """The file is not a valid scenario (exit status 2); `problems` says where and why."""

    def __init__(self, file: str, problems: list[Problem]) -> None:
        self.file = file
        self.problems = problems
        super().__init__("\n".join(str(p) for p in problems))


# --- the parsed scenario --------------------------------------------------------------------


@dataclass(frozen=True)
class StepBase:
    number: int  # 1-based, as people count steps
    line: int | None  # where the step starts in the file
    text: str  # the step as written


@dataclass(frozen=True)
class CommandStep(StepBase):
    command: str
    fields: dict[str, Any]
    error: str | None  # the refusal code the step expects, `any`, or None (must be accepted)


@dataclass(frozen=True)
class WaitStep(StepBase):
    duration: timedelta


@dataclass(frozen=True)
class ExpectStep(StepBase):
    target: str  # order | appeal | trader | ledger | complaint
    ref: str
    checks: dict[str, Any]  # only the fields the step gives


Step = CommandStep | WaitStep | ExpectStep


@dataclass(frozen=True)
class Scenario:
    file: str
    name: str
    rules: tuple[str, ...]
    start: datetime
    agents: frozenset[str]
    policy: Policy
    steps: tuple[Step, ...]
    overrides: dict[str, Any] = field(default_factory=dict)
    supervisors: frozenset[str] = frozenset()


# --- schema ---------------------------------------------------------------------------------


def _moment(value: Any) -> Any:
    """YAML timestamps without a zone are UTC (YAML 1.1); a bare date is its midnight UTC."""
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if isinstance(value, date):
        return datetime.combine(value, time(0), tzinfo=UTC)
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
        except ValueError:
            raise ValueError(f"not a time: {value!r} (write e.g. 2026-03-01T10:00:00Z)") from None
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    raise ValueError("write the start time like 2026-03-01T10:00:00Z")


def _one_line(value: str) -> str:
    if "\n" in value.strip():
        raise ValueError("the scenario's name is one line")
    if not value.strip():
        raise ValueError("the scenario needs a name")
    return value.strip()


def _known_rule(value: Any) -> Any:
    if isinstance(value, str) and value not in RULE_IDS:
        close = difflib.get_close_matches(value, RULE_IDS, n=1)
        hint = f" (did you mean {close[0]}?)" if close else ""
        raise ValueError(f"{value!r} is not a rule ID of rules.md{hint}")
    return value


RuleId = Annotated[StrictStr, BeforeValidator(_known_rule)]


def _start(value: datetime) -> datetime:
    try:
        return bounded(value, "start")
    except EscrowError as e:
        raise ValueError(e.message.removeprefix("start: ")) from None


class Header(BaseModel):
    """Everything in a scenario file but its steps, which `load` checks one by one."""

    model_config = ConfigDict(extra="forbid")

    scenario: Annotated[StrictStr, pydantic.AfterValidator(_one_line)]
    rules: list[RuleId] = []
    start: Annotated[datetime, BeforeValidator(_moment), pydantic.AfterValidator(_start)] = (
        DEFAULT_START
    )
    agents: list[Ref] = []
    supervisors: list[Ref] = []
    policy: dict[str, Any] = {}
    steps: Annotated[list[Any], Field(min_length=1)]

    @pydantic.model_validator(mode="after")
    def _supervisors_are_agents(self) -> Header:
        """scenarios.md: each supervisor must also be listed in `agents`."""
        strangers = [name for name in self.supervisors if name not in self.agents]
        if strangers:
            raise ValueError(f"supervisors must be listed in agents too: {', '.join(strangers)}")
        return self


def _exact_or_zero(value: Any) -> Decimal:
    if isinstance(value, bool | float):
        raise ValueError(
            f"amounts are strings or integers; YAML read {value!r} as a float, which is inexact"
        )
    if isinstance(value, int | str):
        try:
            number = Decimal(str(value).strip())
        except ArithmeticError:
            raise ValueError(f"not a decimal number: {value!r}") from None
        if number.is_finite() and number >= 0:
            return number
    raise ValueError("an amount is a decimal string or integer, zero or more")


Balance = Annotated[Decimal, BeforeValidator(_exact_or_zero)]
OrderStateName = Literal["awaiting_payment", "paid", "in_appeal", "completed", "cancelled"]
AppealStateName = Literal[
    "open",
    "under_review",
    "awaiting_refund",
    "awaiting_payment_proof",
    "awaiting_top_up",
    "awaiting_freeze_proof",
    "resolved",
    "cancelled",
]
RefundStateName = Literal["requested", "reported", "confirmed", "refused"]
SanctionName = Literal[
    "p2p_suspension", "trading_suspension_24h", "partial_ban", "permanent_suspension"
]
assert set(OrderStateName.__args__) == {s.value for s in OrderState}  # type: ignore[attr-defined]
assert set(AppealStateName.__args__) == {s.value for s in AppealState}  # type: ignore[attr-defined]
assert set(RefundStateName.__args__) == {s.value for s in RefundState}  # type: ignore[attr-defined]
assert set(SanctionName.__args__) == {s.value for s in SanctionKind}  # type: ignore[attr-defined]
ClawbackName = Literal["open", "recovered", "waived"]
ComplaintStateName = Literal["filed", "under_review", "upheld", "overturned", "withdrawn"]
assert set(ClawbackName.__args__) == {s.value for s in ClawbackState}  # type: ignore[attr-defined]
assert set(ComplaintStateName.__args__) == {s.value for s in ComplaintState}  # type: ignore[attr-defined]


class Expectation(BaseModel):
    """Fields left out are not checked; `nullable` fields may be checked against null."""

    model_config = ConfigDict(extra="forbid")
    nullable: ClassVar[frozenset[str]] = frozenset()

    @pydantic.model_validator(mode="after")
    def _no_null(self) -> Expectation:
        for name in self.model_fields_set - self.nullable:
            if getattr(self, name) is None:
                raise ValueError(f"{name} cannot be null")
        return self


class OrderExpect(Expectation):
    nullable = frozenset({"open_appeal"})
    order: Ref
    state: OrderStateName | None = None
    escrow: Literal["locked", "released", "returned"] | None = None
    open_appeal: Ref | None = None


class AppealExpect(Expectation):
    nullable = frozenset({"outcome", "refund_state", "clawback"})
    appeal: Ref
    state: AppealStateName | None = None
    outcome: Literal["release", "cancel", "none"] | None = None
    refund_state: RefundStateName | None = None
    clawback: ClawbackName | None = None


class TraderExpect(Expectation):
    trader: Ref
    can_trade: StrictBool | None = None
    sanctions: list[SanctionName] | None = None


class LedgerExpect(Expectation):
    ledger: Annotated[str, pydantic.StringConstraints(strict=True, pattern=r"^[A-Z0-9]{2,10}$")]
    in_escrow: Balance | None = None
    released: Balance | None = None
    returned: Balance | None = None
    clawback_owed: Balance | None = None
    clawback_recovered: Balance | None = None


class ComplaintExpect(Expectation):
    nullable = frozenset({"decision", "compensation"})
    complaint: Ref
    state: ComplaintStateName | None = None
    decision: Literal["upheld", "overturned"] | None = None
    overdue: StrictBool | None = None
    compensation: Balance | None = None


EXPECTATIONS: dict[str, type[Expectation]] = {
    "order": OrderExpect,
    "appeal": AppealExpect,
    "trader": TraderExpect,
    "ledger": LedgerExpect,
    "complaint": ComplaintExpect,
}


# --- YAML -----------------------------------------------------------------------------------


# libyaml's parser when PyYAML was built with it: parsing is most of a scenario run otherwise.
_SafeLoader: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _Loader(_SafeLoader):  # type: ignore[valid-type,misc]
    """Safe YAML that refuses a key given twice: YAML would silently keep the last one."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)  # type: ignore[no-untyped-call]
            try:
                duplicate = key in seen
                seen.add(key)
            except TypeError:
                continue
            if duplicate:
                raise yaml.constructor.ConstructorError(
                    "while reading a mapping",
                    node.start_mark,
                    f"the key {key!r} is given twice",
                    key_node.start_mark,
                )
        mapping: dict[Any, Any] = super().construct_mapping(node, deep=deep)
        return mapping


def _read_yaml(text: str) -> tuple[Any, list[yaml.Node]]:
    """The document and the nodes of its steps (for their line and text as written)."""
    loader = _Loader(text)
    try:
        node = loader.get_single_node()
        data = loader.construct_document(node) if node is not None else None
    finally:
        loader.dispose()  # type: ignore[no-untyped-call]
    step_nodes: list[yaml.Node] = []
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            if getattr(key, "value", None) == "steps" and isinstance(value, yaml.SequenceNode):
                step_nodes = list(value.value)
    return data, step_nodes


def _yaml_problem(file: str, error: yaml.YAMLError) -> Problem:
    mark = getattr(error, "problem_mark", None) or getattr(error, "context_mark", None)
    line = mark.line + 1 if mark is not None else None
    problem = getattr(error, "problem", None) or str(error)
    context = getattr(error, "context", None)
    message = f"YAML syntax error: {problem}" + (f" ({context})" if context else "")
    return Problem(file, message, line=line)


def _pydantic_problems(
    file: str,
    errors: list[ErrorDetails],
    *,
    step: int | None = None,
    line: int | None = None,
    prefix: str = "",
) -> list[Problem]:
    problems = []
    for err in errors:
        loc = ".".join(str(p) for p in err["loc"])
        message = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            message = "unknown field"
        elif err["type"] == "missing":
            message = "required field is missing"
        elif err["type"] == "literal_error":
            message = f"{message}, got {err['input']!r}"
        name = f"{prefix}{loc}" if loc else prefix.rstrip(".") or None
        problems.append(Problem(file, message, step=step, field=name, line=line))
    return problems


# --- loading --------------------------------------------------------------------------------


def scenario_files(paths: list[Path]) -> list[Path]:
    """Every *.yaml under the given folders, plus the files given by name, each once, sorted
    within each folder so runs are repeatable."""
    found: dict[Path, None] = {}
    for path in paths:
        if path.is_dir():
            for child in sorted(path.rglob("*.yaml")):
                if child.is_file():
                    found[child] = None
        else:
            found[path] = None
    return list(found)


def load(path: Path | str) -> Scenario:
    """Read and check one scenario file; raises ScenarioFileError with every problem found."""
    path = Path(path)
    file = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise ScenarioFileError(file, [Problem(file, f"cannot read the file: {e}")]) from None
    return parse(text, file)


def parse(text: str, file: str = "<scenario>") -> Scenario:
    try:
        data, nodes = _read_yaml(text)
    except yaml.YAMLError as e:
        raise ScenarioFileError(file, [_yaml_problem(file, e)]) from None
    except (ValueError, OverflowError, RecursionError) as e:  # e.g. a date 2026-02-30
        problem = Problem(file, f"YAML value error: {e}")
        raise ScenarioFileError(file, [problem]) from None
    if not isinstance(data, dict):
        what = "empty" if data is None else f"a {type(data).__name__}"
        problem = Problem(
            file, f"a scenario is a mapping with `scenario:` and `steps:`, not {what}"
        )
        raise ScenarioFileError(file, [problem])
    try:
        header = Header.model_validate(data)
    except pydantic.ValidationError as e:
        raise ScenarioFileError(file, _pydantic_problems(file, e.errors())) from None
    problems: list[Problem] = []
    overrides = dict(header.policy)
    policy = Policy()
    try:
        policy = Policy.model_validate(overrides)
    except InvalidFields as e:
        problems.extend(_pydantic_problems(file, e.details, prefix="policy."))
    agents = frozenset(header.agents)
    steps: list[Step] = []
    for index, raw in enumerate(header.steps):
        node = nodes[index] if index < len(nodes) else None
        step, step_problems = _step(file, index + 1, raw, node, text)
        problems.extend(step_problems)
        if step is not None:
            steps.append(step)
    problems.extend(_clock_in_range(file, header.start, steps))
    if problems:
        raise ScenarioFileError(file, problems)
    return Scenario(
        file=file,
        name=header.scenario,
        rules=tuple(header.rules),
        start=header.start.astimezone(UTC),
        agents=agents,
        policy=policy,
        steps=tuple(steps),
        overrides=overrides,
        supervisors=frozenset(header.supervisors),
    )


def _clock_in_range(file: str, start: datetime, steps: list[Step]) -> list[Problem]:
    """The first wait that would move the clock past LATEST (escrow.clock), as a problem."""
    now = start
    for step in steps:
        if isinstance(step, WaitStep):
            if step.duration > LATEST - now:
                message = f"the clock would pass {LATEST:%Y-%m-%d}, the latest time allowed"
                return [Problem(file, message, step=step.number, field="wait", line=step.line)]
            now += step.duration
    return []


def _as_written(node: yaml.Node | None, text: str, raw: Any) -> str:
    if node is not None:
        written = text[node.start_mark.index : node.end_mark.index].rstrip()
        if written:
            lines = written.splitlines()
            while len(lines) > 1 and (not lines[-1].strip() or lines[-1].lstrip().startswith("#")):
                lines.pop()  # a comment after the step belongs to the next one
            indent = node.start_mark.column
            tail = [ln[indent:] if ln[:indent].isspace() else ln.lstrip() for ln in lines[1:]]
            return "\n".join([lines[0], *tail])
    return yaml.safe_dump(raw, default_flow_style=True, sort_keys=False).strip()


def _step(
    file: str, number: int, raw: Any, node: yaml.Node | None, text: str
) -> tuple[Step | None, list[Problem]]:
    line = node.start_mark.line + 1 if node is not None else None
    written = _as_written(node, text, raw)

    def problem(message: str, name: str | None = None) -> Problem:
        return Problem(file, message, step=number, field=name, line=line)

    if not isinstance(raw, dict):
        return None, [problem("a step is a mapping with one command, `wait` or `expect`")]
    keys = [k for k in raw if k != "error"]
    if not keys:
        return None, [problem("the step has no command (only `error:`)")]
    if len(keys) > 1:
        names = ", ".join(str(k) for k in keys)
        return None, [problem(f"a step holds exactly one command; this one has {names}")]
    name = keys[0]
    value = raw[name]
    if not isinstance(name, str) or (name not in COMMANDS and name not in STEP_WORDS):
        known = [*COMMANDS, *STEP_WORDS]
        close = difflib.get_close_matches(str(name), known, n=1)
        hint = f" (did you mean {close[0]}?)" if close else ""
        return None, [problem(f"unknown command {name!r}{hint}", str(name))]
    if name in STEP_WORDS and "error" in raw:
        return None, [problem(f"`error:` belongs to a command step, not to `{name}`", "error")]
    if name == "wait":
        return _wait(number, line, written, value, problem)
    if name == "expect":
        return _expect(file, number, line, written, value, problem)
    return _command(number, line, written, name, value, raw.get("error"), "error" in raw, problem)


def _wait(
    number: int, line: int | None, written: str, value: Any, problem: Any
) -> tuple[Step | None, list[Problem]]:
    if not isinstance(value, str):
        return None, [problem(f"bad duration {value!r}: write e.g. 15m, 2d or 1d2h30m", "wait")]
    try:
        duration = bounded_duration(value)
    except ValueError as e:
        return None, [problem(f"bad duration: {e}", "wait")]
    return WaitStep(number, line, written, duration), []


def _expect(
    file: str, number: int, line: int | None, written: str, value: Any, problem: Any
) -> tuple[Step | None, list[Problem]]:
    if not isinstance(value, dict):
        return None, [
            problem("`expect` takes a mapping such as {order: o1, state: paid}", "expect")
        ]
    targets = [t for t in TARGETS if t in value]
    if len(targets) != 1:
        said = ", ".join(targets) if targets else "none"
        message = (
            "an expectation names exactly one of order, appeal, trader, ledger, complaint "
            f"(got {said})"
        )
        unknown = [str(k) for k in value if k not in TARGETS]
        if not targets and unknown:
            message += f"; unknown expectation field {unknown[0]!r}"
        return None, [problem(message, "expect")]
    target = targets[0]
    model = EXPECTATIONS[target]
    unknown = [str(k) for k in value if k not in model.model_fields]
    if unknown:
        allowed = ", ".join(f for f in model.model_fields if f != target)
        return None, [
            problem(
                f"unknown expectation field {u!r} (an {target} expectation checks {allowed})",
                f"expect.{u}",
            )
            for u in unknown
        ]
    try:
        parsed = model.model_validate(value)
    except pydantic.ValidationError as e:
        return None, _pydantic_problems(file, e.errors(), step=number, line=line, prefix="expect.")
    checks = {str(k): getattr(parsed, str(k)) for k in value if k != target}  # as written
    if "sanctions" in checks:
        checks["sanctions"] = frozenset(checks["sanctions"])
    ref = str(getattr(parsed, target))
    return ExpectStep(number, line, written, target, ref, checks), []


def _command(
    number: int,
    line: int | None,
    written: str,
    name: str,
    value: Any,
    error: Any,
    has_error: bool,
    problem: Any,
) -> tuple[Step | None, list[Problem]]:
    problems: list[Problem] = []
    if has_error and (not isinstance(error, str) or error not in ERROR_CODES):
        close = difflib.get_close_matches(str(error), ERROR_CODES, n=1)
        hint = f" (did you mean {close[0]}?)" if close else ""
        problems.append(problem(f"unknown error code {error!r}{hint}", "error"))
    if not isinstance(value, dict):
        problems.append(problem(f"`{name}` takes a mapping of fields such as {{order: o1}}", name))
        return None, problems
    for key, item in value.items():
        if key in AMOUNT_FIELDS and isinstance(item, float):
            problems.append(
                problem(
                    f"YAML read {item!r} as a float and lost its exact value: "
                    f'write amounts as strings ("{item}") or integers',
                    f"{name}.{key}",
                )
            )
    if problems:
        return None, problems
    if error not in ("validation_error", "any"):
        try:
            parse_command(name, value)
        except InvalidCommand as e:
            if error is None:  # could never run as written: the file is broken
                return None, [problem(msg, f"{name}.{f}") for f, msg in e.fields]
    return CommandStep(number, line, written, name, dict(value), error), []
