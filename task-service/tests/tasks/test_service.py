"""Unit tests of the service rules (pure functions; no database)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from pydantic import ValidationError
from task_service.tasks.dependencies import parse_if_match
from task_service.tasks.graph_service import find_path
from task_service.tasks.idempotency import request_fingerprint
from task_service.tasks.schemas import (
    TaskCreate,
    TaskStatus,
    TaskUpdate,
    as_utc,
    normalise_tags,
    resolve_status,
)
from task_service.tasks.service import status_changes

TODO, IN_PROGRESS, DONE = TaskStatus.TODO, TaskStatus.IN_PROGRESS, TaskStatus.DONE


@pytest.mark.parametrize(
    ("current", "status", "is_completed", "expected"),
    [
        (TODO, None, None, None),
        (TODO, IN_PROGRESS, None, IN_PROGRESS),
        (TODO, None, True, DONE),
        (DONE, None, False, TODO),
        (IN_PROGRESS, None, False, IN_PROGRESS),
        (None, None, False, TODO),
        (TODO, DONE, True, DONE),
        (DONE, IN_PROGRESS, False, IN_PROGRESS),
    ],
)
def test_resolve_status(
    current: TaskStatus | None,
    status: TaskStatus | None,
    is_completed: bool | None,
    expected: TaskStatus | None,
) -> None:
    assert resolve_status(current, status, is_completed) is expected


@pytest.mark.parametrize(("status", "is_completed"), [(TODO, True), (DONE, False)])
def test_resolve_status_refuses_contradictions(status: TaskStatus, is_completed: bool) -> None:
    with pytest.raises(ValueError, match="contradict"):
        resolve_status(None, status, is_completed)


def test_status_changes_follow_completed_at() -> None:
    now = datetime(2030, 1, 1, tzinfo=UTC)
    assert status_changes(TODO, DONE, now) == {"status": "done", "completed_at": now}
    assert status_changes(DONE, IN_PROGRESS, now) == {"status": "in_progress", "completed_at": None}
    assert status_changes(TODO, IN_PROGRESS, now) == {"status": "in_progress"}
    assert status_changes(DONE, DONE, now) == {}


def test_status_aliases_and_case() -> None:
    assert TaskCreate(title="x", status="pending").status is TODO  # type: ignore[arg-type]
    assert TaskCreate(title="x", status="COMPLETED").status is DONE  # type: ignore[arg-type]
    assert TaskUpdate(status="completed").status is DONE  # type: ignore[arg-type]
    with pytest.raises(ValidationError):
        TaskCreate(title="x", status="finished")  # type: ignore[arg-type]


def test_naive_datetimes_are_utc_and_aware_ones_converted() -> None:
    naive = datetime(2030, 5, 1, 12)
    assert as_utc(naive) == datetime(2030, 5, 1, 12, tzinfo=UTC)
    plus_two = datetime(2030, 5, 1, 14, tzinfo=timezone(timedelta(hours=2)))
    converted = as_utc(plus_two)
    assert converted.utcoffset() == timedelta(0)
    assert converted == datetime(2030, 5, 1, 12, tzinfo=UTC)


def test_tags_are_trimmed_lowercased_and_deduplicated() -> None:
    assert normalise_tags([" Work", "work", "", "  ", "Home "]) == ["work", "home"]
    with pytest.raises(ValueError, match="at most"):
        normalise_tags([f"t{n}" for n in range(21)])


def test_update_knows_which_fields_were_sent() -> None:
    update = TaskUpdate.model_validate({"description": None, "status": "done"})
    assert update.changes() == {"description": None}
    with pytest.raises(ValidationError):
        TaskUpdate.model_validate({"title": None})
    with pytest.raises(ValidationError):
        TaskUpdate.model_validate({"owner_id": 3})


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (None, None),
        ("*", None),
        ('W/"3"', frozenset({3})),
        ('"3"', frozenset({3})),
        ("3", frozenset({3})),
        ('W/"3", "4"', frozenset({3, 4})),
        ("nonsense", frozenset()),
    ],
)
def test_parse_if_match(header: str | None, expected: frozenset[int] | None) -> None:
    assert parse_if_match(header) == expected


def test_find_path_returns_a_shortest_path_or_none() -> None:
    edges = [(1, 2), (2, 3), (3, 4), (1, 4), (5, 1)]
    assert find_path(edges, 1, 4) == [1, 4]
    assert find_path(edges, 2, 4) == [2, 3, 4]
    assert find_path(edges, 4, 1) is None
    assert find_path([], 7, 7) == [7]


def test_request_fingerprint_is_about_meaning() -> None:
    a = TaskCreate.model_validate(
        {"title": " x ", "tags": ["B", "a"], "due_date": "2030-01-01T00:00"}
    )
    b = TaskCreate.model_validate(
        {
            "due_date": "2030-01-01T01:00+01:00",
            "tags": ["b", "a"],
            "title": "x",
            "priority": "medium",
        }
    )
    c = TaskCreate.model_validate({"title": "x", "tags": ["a", "b"]})
    assert request_fingerprint(a) == request_fingerprint(b)
    assert request_fingerprint(a) != request_fingerprint(c)
