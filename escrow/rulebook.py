"""A rulebook is a `transitions` state machine declared once, as data, per aggregate type.

It is never bound to an aggregate (no per-object Machine, no `add_model`): a command asks
`decide(trigger, state, situation)` and gets the destination state and the rule ID, or a typed
refusal. Guards are `transitions` conditions that carry the refusal code and rule they stand
for; when several fail, the code that scenarios.md checks first wins.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

from transitions import Machine
from transitions.core import EventData

from escrow.errors import PRECEDENCE, EscrowError, refusal


@dataclass(frozen=True)
class Guard:
    """A condition a transition needs; when it does not hold, the command is refused."""

    code: str
    rule: str
    why: str
    holds: Callable[[Any], bool]

    def __call__(self, event_data: EventData) -> bool:
        return self.holds(event_data.model)

    def __repr__(self) -> str:  # shown by transitions in debug logs and by the diagram
        return self.why


@dataclass(frozen=True)
class Step:
    """One declared transition: `dest` '=' keeps the state."""

    trigger: str
    source: str | Sequence[str]
    dest: str
    rule: str
    guards: tuple[Guard, ...] = ()
    who: frozenset[str] = field(default_factory=frozenset)

    @property
    def sources(self) -> list[str]:
        # Plain strings: `transitions` would name an Enum member by its name, not its value.
        return [str(self.source)] if isinstance(self.source, str) else [str(s) for s in self.source]

    def dest_from(self, source: str) -> str:
        return source if self.dest == "=" else str(self.dest)


@dataclass(frozen=True)
class Decision:
    source: str
    dest: str
    rule: str


class Rulebook:
    def __init__(
        self,
        name: str,
        states: Sequence[str],
        initial: str,
        steps: Iterable[Step],
        refusals: dict[str, Sequence[Guard]],
    ) -> None:
        self.name = name
        self.steps = tuple(steps)
        self.refusals = refusals
        self.machine = Machine(
            model=None,
            states=[str(state) for state in states],
            initial=str(initial),
            transitions=[
                {
                    "trigger": s.trigger,
                    "source": s.sources,
                    "dest": str(s.dest),
                    "conditions": list(s.guards),
                }
                for s in self.steps
            ],
            auto_transitions=False,
            send_event=True,
        )
        self._rules = {(s.trigger, src): s.rule for s in self.steps for src in s.sources}
        self.who: dict[str, frozenset[str]] = {}
        for s in self.steps:
            self.who[s.trigger] = self.who.get(s.trigger, frozenset()) | s.who

    @property
    def states(self) -> list[str]:
        return list(self.machine.states)

    def decide(self, trigger: str, state: str, situation: Any) -> Decision:
        """The destination of `trigger` from `state`, or the refusal that wins by precedence."""
        state = str(state)
        failed: list[Guard] = []
        event = self.machine.events.get(trigger)
        if event is not None:
            data = EventData(self.machine.get_state(state), event, self.machine, situation, (), {})
            for transition in self.machine.get_transitions(trigger, source=state):
                conditions = transition.conditions
                missing = [cast(Guard, c.func) for c in conditions if not c.check(data)]
                if not missing:
                    dest = str(transition.dest)
                    return Decision(state, dest, self._rules[(trigger, state)])
                failed.extend(missing)
        failed.extend(g for g in self.refusals.get(trigger, ()) if not g.holds(situation))
        raise self._refusal(trigger, state, failed)

    def _refusal(self, trigger: str, state: str, failed: list[Guard]) -> EscrowError:
        if not failed:
            return refusal(
                "invalid_state", f"{trigger} is not allowed while the {self.name} is {state}"
            )
        worst = min(failed, key=lambda g: PRECEDENCE.index(g.code))
        return refusal(worst.code, worst.why, worst.rule)

    def mermaid(self) -> str:
        """The state diagram, generated from the declared transitions themselves."""
        lines = ["stateDiagram-v2", f"    [*] --> {self.machine.initial}"]
        for s in self.steps:
            for src in s.sources:
                dest = s.dest_from(src)
                who = "/".join(sorted(s.who))
                guard = f" [{', '.join(g.rule for g in s.guards)}]" if s.guards else ""
                lines.append(f"    {src} --> {dest}: {s.trigger} ({who}, {s.rule}){guard}")
        lines += [f"    {state} --> [*]" for state in self.final_states]
        return "\n".join(lines)

    @property
    def final_states(self) -> list[str]:
        """States nothing leaves: steps from them may record facts (a recovery on a resolved
        appeal, K2) but keep the state."""
        return [
            state
            for state in self.machine.states
            if not any(state in s.sources and s.dest_from(state) != state for s in self.steps)
        ]
