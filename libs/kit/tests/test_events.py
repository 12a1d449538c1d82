"""The event envelope: what goes out comes back, and anything else is `InvalidEvent`."""

from __future__ import annotations

import datetime as dt
import json
import uuid
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from taskflow_kit.events import Event, InvalidEvent, dead_letter_key, stream_key

ENVELOPE_KEYS = {"id", "type", "occurred_at", "producer", "subject_id", "data"}

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
offsets = st.integers(min_value=-14 * 60, max_value=14 * 60).map(
    lambda minutes: dt.timezone(dt.timedelta(minutes=minutes))
)
events = st.builds(
    Event,
    type=st.text(min_size=1, max_size=30),
    producer=st.text(min_size=1, max_size=30),
    subject_id=st.text(max_size=30),
    data=st.dictionaries(st.text(max_size=10), json_values, max_size=5),
    id=st.uuids().map(str),
    occurred_at=st.datetimes(timezones=offsets),
)


def valid_envelope() -> dict[str, Any]:
    return Event(type="task.created", producer="task-service", subject_id="7", data={}).envelope()


@given(events)
def test_round_trip(event: Event) -> None:
    raw = event.to_json()
    assert set(json.loads(raw)) == ENVELOPE_KEYS
    again = Event.from_json(raw)
    assert again == event
    assert again.occurred_at.utcoffset() == event.occurred_at.utcoffset()
    assert Event.from_json(raw.encode()) == event


def test_defaults_are_a_fresh_uuid_and_now_in_utc() -> None:
    before = dt.datetime.now(dt.UTC)
    first = Event(type="user.deleted", producer="user-service", subject_id="1", data={})
    second = Event(type="user.deleted", producer="user-service", subject_id="1", data={})
    assert first.id != second.id
    assert uuid.UUID(first.id).version == 4
    assert before <= first.occurred_at <= dt.datetime.now(dt.UTC)
    assert first.occurred_at.utcoffset() == dt.timedelta(0)


def test_stream_names() -> None:
    assert stream_key("taskflow:", "task") == "taskflow:events:task"
    assert dead_letter_key("taskflow:", "stats-service") == "taskflow:events:dead:stats-service"


def _without(key: str) -> dict[str, Any]:
    body = valid_envelope()
    del body[key]
    return body


def _with(**changes: Any) -> dict[str, Any]:
    return {**valid_envelope(), **changes}


MALFORMED: list[tuple[str, str | bytes]] = [
    ("empty", ""),
    ("not json", "{nope"),
    ("json list", "[1, 2]"),
    ("json string", '"event"'),
    ("json null", "null"),
    ("invalid utf-8", b"\xff\xfe{}"),
    ("deep nesting", "[" * 100_000 + "]" * 100_000),
    *[(f"no {key}", json.dumps(_without(key))) for key in sorted(ENVELOPE_KEYS)],
    ("id not a uuid", json.dumps(_with(id="42"))),
    ("id a number", json.dumps(_with(id=42))),
    ("naive occurred_at", json.dumps(_with(occurred_at="2026-01-01T10:00:00"))),
    ("occurred_at not a date", json.dumps(_with(occurred_at="yesterday"))),
    ("occurred_at a number", json.dumps(_with(occurred_at=1700000000))),
    ("data a list of pairs", json.dumps(_with(data=[["a", 1]]))),
    ("data a string", json.dumps(_with(data=""))),
    ("data null", json.dumps(_with(data=None))),
    ("type null", json.dumps(_with(type=None))),
    ("type a number", json.dumps(_with(type=3))),
    ("producer an object", json.dumps(_with(producer={"a": 1}))),
    ("subject_id null", json.dumps(_with(subject_id=None))),
    (
        "data nested too deep",
        json.dumps(_with(data={})).replace("{}", '{"a":' + "[" * 5000 + "]" * 5000 + "}"),
    ),
]


@pytest.mark.parametrize(("case", "raw"), MALFORMED, ids=[case for case, _ in MALFORMED])
def test_malformed_envelope_is_invalid_event(case: str, raw: str | bytes) -> None:
    with pytest.raises(InvalidEvent):
        Event.from_json(raw)


def _parse_or_invalid(raw: str | bytes) -> Event | None:
    try:
        return Event.from_json(raw)
    except InvalidEvent:
        return None


@given(json_values)
def test_any_json_is_an_event_or_invalid_event(value: Any) -> None:
    assert _parse_or_invalid(json.dumps(value)) is None  # none of these is an envelope


@given(st.sampled_from(sorted(ENVELOPE_KEYS)), json_values)
def test_any_value_in_any_field_is_an_event_or_invalid_event(key: str, value: Any) -> None:
    event = _parse_or_invalid(json.dumps(_with(**{key: value})))
    if event is not None:  # what was accepted is a well-formed event
        assert isinstance(event.type, str)
        assert isinstance(event.subject_id, str)
        assert isinstance(event.data, dict)
        assert event.occurred_at.tzinfo is not None
        assert Event.from_json(event.to_json()) == event


@given(st.text() | st.binary())
def test_any_text_or_bytes_is_an_event_or_invalid_event(raw: str | bytes) -> None:
    _parse_or_invalid(raw)
