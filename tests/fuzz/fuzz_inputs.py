"""Coverage-guided fuzzing (atheris, libFuzzer) of what callers hand the engine: scenario
files, commands as plain data, store URLs, durations and times.

The first byte of an input picks the target, the rest is its text. A crash is any exception
other than the typed answer the target documents (a ScenarioFileError, a refusal, a
validation error), or a scenario run the engine itself broke in.

    python tests/fuzz/fuzz_inputs.py NEW_DIR tests/fuzz/corpus -max_total_time=600

(NEW_DIR first: libFuzzer adds what it finds to the first folder; the committed seed corpus
stays as it is.) tests/test_fuzz.py runs it briefly with a fixed seed.
"""

from __future__ import annotations

import contextlib
import sys
from datetime import datetime
from typing import Any

import atheris
import yaml

with atheris.instrument_imports(include=["commands", "escrow", "projections"]):
    from escrow.clock import bounded
    from escrow.commands.api import Escrow
    from escrow.commands.models import parse_command
    from escrow.commands.scenarios.format import ScenarioFileError, parse
    from escrow.commands.scenarios.runner import run_scenario
    from escrow.durations import bounded_duration
    from escrow.errors import EscrowError, StoreError, ValidationError
    from escrow.store import mask, parse_store_url

MAX_STEPS = 40  # a scenario longer than this is loaded, not run: runs stay fast
_engine: Escrow | None = None


def engine() -> Escrow:
    """One memory engine for every command input, with an order and an appeal to act on."""
    global _engine
    if _engine is None:
        _engine = Escrow("memory:", agents={"carol"})
        _engine.run(
            "create_order",
            {
                "order": "o1",
                "seller": "alice",
                "buyer": "bob",
                "asset": "USDT",
                "amount": "500",
                "price": "0.92",
                "fiat": "EUR",
                "payment_method": "sepa",
            },
        )
    return _engine


def scenario(text: str) -> None:
    try:
        loaded = parse(text, "fuzz.yaml")
    except ScenarioFileError:
        return
    if len(loaded.steps) > MAX_STEPS:
        return
    result = run_scenario(loaded)
    if result.failure is not None and result.failure.found.startswith("the engine crashed"):
        raise RuntimeError(result.failure.found)


def command(text: str) -> None:
    try:
        data: Any = yaml.safe_load(text)
    except (yaml.YAMLError, ValueError, OverflowError, RecursionError):
        return  # not data at all: the API is never handed it
    if not isinstance(data, dict) or len(data) != 1:
        return
    [(name, fields)] = data.items()
    with contextlib.suppress(ValidationError):
        parse_command(name, fields)
    try:
        engine().run(name, fields)
    except StoreError:
        raise
    except EscrowError:
        pass


def store_url(text: str) -> None:
    """A password (s3cret in the seeds) never comes back, in a refusal or the URL shown."""
    secret = text.count("s3cret") == 1 and ":s3cret@" in text
    mask(text)
    try:
        config = parse_store_url(text)
    except ValidationError as e:
        assert not secret or "s3cret" not in str(e), e
        return
    assert not secret or "s3cret" not in config.shown


def moment(text: str) -> None:
    with contextlib.suppress(ValueError):
        bounded_duration(text)
    with contextlib.suppress(ValueError, ValidationError):
        bounded(datetime.fromisoformat(text), "at")


TARGETS = (scenario, command, store_url, moment)


def one_input(data: bytes) -> None:
    if not data:
        return
    target = TARGETS[data[0] % len(TARGETS)]
    target(data[1:].decode("utf-8", errors="replace"))


if __name__ == "__main__":
    atheris.Setup(sys.argv, one_input)
    atheris.Fuzz()
