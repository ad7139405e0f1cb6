"""The log's rows and their decoder (`escrow/log.py`) give exactly the events the library's
own `select_notifications` + `mapper.to_domain_event` give: read models and the audit rely on
it, and a rebuild is only as right as the events it replays."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any
from uuid import UUID, uuid4

import pytest
from eventsourcing.persistence import JSONTranscoder, StoredEvent
from hypothesis import given
from hypothesis import strategies as st

from escrow.commands.api import Escrow
from escrow.log import EventLog
from escrow.order import Order
from escrow.projections.synthetic import fill
from tests.test_properties import SETTINGS


def test_every_row_decodes_to_the_mappers_event(engine: Escrow) -> None:
    """Random order stories (every event kind the engine records), on each store."""
    app = engine.app
    fill(app, 1500, wave=50, seed=7)
    log = EventLog(app.recorder)
    decode = log.decoder(app.mapper)
    rows = list(log.rows())
    notifications = []
    start = 0
    while page := app.recorder.select_notifications(start, 500, inclusive_of_start=False):
        notifications += page
        start = page[-1].id
    assert len(rows) == len(notifications) >= 1500
    topics = set()
    for row, n in zip(rows, notifications, strict=True):
        assert (row[0], row[1], row[2], row[3]) == (
            n.id,
            str(n.originator_id),
            n.originator_version,
            n.topic,
        )
        mine, theirs = decode(row), app.mapper.to_domain_event(n)
        assert type(mine) is type(theirs)
        assert vars(mine) == vars(theirs)
        assert {k: type(v) for k, v in vars(mine).items()} == {
            k: type(v) for k, v in vars(theirs).items()
        }
        topics.add(row[3])
    assert len(topics) > 10  # the stories reach well beyond creation


def test_a_partition_keeps_whole_streams(engine: Escrow) -> None:
    app = engine.app
    fill(app, 600, wave=30, seed=3)
    log = EventLog(app.recorder)
    every = list(log.rows())
    parts = [list(log.rows(part=(k, 3))) for k in range(3)]
    assert sorted(r for part in parts for r in part) == sorted(every)
    streams = [{r[1] for r in part} for part in parts]
    assert not (streams[0] & streams[1]) and not (streams[1] & streams[2])


# --- the decoder against the transcoder on any shape of state -------------------------------

_leaf = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),  # beyond 64 bits too
    st.floats(allow_nan=False),  # infinities: written as JSON never allows, the mapper decides
    st.text(max_size=8),
    st.decimals(allow_nan=False, allow_infinity=False, places=4),
    st.datetimes(timezones=st.just(UTC)),
    st.builds(UUID, st.uuids().map(str)),
)
_value = st.recursive(
    _leaf,
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(st.sampled_from(["_type_", "_data_", "a", "b"]), inner, max_size=3)
    ),
    max_leaves=8,
)


@given(states=st.lists(st.dictionaries(st.text(max_size=6), _value, max_size=6), max_size=4))
@SETTINGS
def test_any_state_decodes_as_the_transcoder_decodes_it(states: list[dict[str, Any]]) -> None:
    """Several states under one topic, in turn: the keys remembered from one event must
    never be trusted for a later event of another shape."""
    app = Escrow("memory:").app
    transcoder = app.mapper.transcoder
    assert isinstance(transcoder, JSONTranscoder)
    decode = EventLog(app.recorder).decoder(app.mapper)
    stream = uuid4()
    for version, state in enumerate(states, start=1):
        stored = transcoder.encode(state)
        row = (version, str(stream), version, "escrow:Order.Released.v1", stored)
        try:
            expected = app.mapper.to_domain_event(
                StoredEvent(stream, version, "escrow:Order.Released.v1", stored)
            )
        except Exception as refused:  # e.g. an unknown transcoding: the same error
            with pytest.raises(type(refused), match=re.escape(str(refused))):
                decode(row)
            continue
        event = decode(row)
        assert type(event) is Order.Released
        assert vars(event) == vars(expected)
        assert json.dumps(vars(event), default=repr) == json.dumps(vars(expected), default=repr)


def test_a_transcoded_value_inside_a_string_is_left_a_string() -> None:
    """A string holding `"_type_":` is escaped in JSON: it must not count as a value."""
    app = Escrow("memory:").app
    decode = EventLog(app.recorder).decoder(app.mapper)
    when = datetime(2026, 3, 1, tzinfo=UTC)
    for text in ['{"_type_":"decimal_str","_data_":"1"}', "plain"]:
        state = {"timestamp": when, "note": text, "amount": Decimal("1.50")}
        stored = app.mapper.transcoder.encode(state)
        event = decode((1, str(uuid4()), 1, "escrow:Order.Released.v1", stored))
        assert vars(event)["note"] == text
        assert vars(event)["amount"] == Decimal("1.50")
        assert vars(event)["timestamp"] == when
    later = decode(
        (
            2,
            str(uuid4()),
            2,
            "escrow:Order.Released.v1",
            app.mapper.transcoder.encode({"timestamp": when + timedelta(1), "note": {"_type_": 1}}),
        )
    )
    assert vars(later)["note"] == {"_type_": 1}
