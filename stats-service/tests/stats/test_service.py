"""The arithmetic of statistics, checked against plain-Python references."""

from __future__ import annotations

import datetime as dt
import math
from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st
from stats_service.stats.schemas import ActivityDay, TaskAggregates
from stats_service.stats.service import (
    activity_series,
    completed_percentage,
    system_overview,
    user_activity,
    user_stats,
)


def reference_percentage(completed: int, total: int) -> float:
    """Exact fraction, rounded half up to hundredths."""
    if total == 0:
        return 0.0
    hundredths = Fraction(completed * 100 * 100, total)
    return math.floor(hundredths + Fraction(1, 2)) / 100


@given(
    st.integers(0, 10**7).flatmap(lambda total: st.tuples(st.integers(0, total), st.just(total)))
)
def test_percentage_matches_exact_half_up_rounding(counts: tuple[int, int]) -> None:
    completed, total = counts
    percentage = completed_percentage(completed, total)
    assert percentage == reference_percentage(completed, total)
    assert 0.0 <= percentage <= 100.0
    assert round(percentage, 2) == percentage


@pytest.mark.parametrize(
    ("completed", "total", "expected"),
    [
        (0, 0, 0.0),
        (0, 5, 0.0),
        (5, 5, 100.0),
        (1, 3, 33.33),
        (2, 3, 66.67),
        (1, 8, 12.5),
        (1, 800, 0.13),  # 0.125 exactly: half up, not half to even
        (3, 800, 0.38),
    ],
)
def test_percentage_examples(completed: int, total: int, expected: float) -> None:
    assert completed_percentage(completed, total) == expected


rows = st.lists(
    st.builds(
        ActivityDay,
        date=st.dates(dt.date(2026, 1, 1), dt.date(2027, 12, 31)),
        created=st.integers(0, 1000),
        completed=st.integers(0, 1000),
    ),
    max_size=40,
)


@given(
    rows=rows, today=st.dates(dt.date(2026, 1, 1), dt.date(2027, 12, 31)), days=st.integers(1, 365)
)
def test_activity_series_is_one_row_per_day_zero_filled(
    rows: list[ActivityDay], today: dt.date, days: int
) -> None:
    series = activity_series(rows, today=today, days=days)

    first = today - dt.timedelta(days=days - 1)
    assert [row.date for row in series] == [first + dt.timedelta(days=n) for n in range(days)]
    for row in series:
        same_day = [r for r in rows if r.date == row.date]
        assert row.created == sum(r.created for r in same_day)
        assert row.completed == sum(r.completed for r in same_day)


def aggregates(**overrides: object) -> TaskAggregates:
    data: dict[str, object] = {
        "total": 7,
        "by_status": {"todo": 3, "in_progress": 1, "done": 3},
        "by_priority": {"low": 1, "medium": 2, "high": 3, "urgent": 1},
        "overdue": 2,
        "due_next_7_days": 4,
        "completed_last_7_days": 1,
        "activity": [],
        "owners": 5,
        "generated_at": "2026-11-22T01:30:00+02:00",
    }
    data.update(overrides)
    return TaskAggregates.model_validate(data)


def test_user_stats_maps_every_field() -> None:
    stats = user_stats(aggregates())

    assert stats.model_dump(mode="json") == {
        "total_tasks": 7,
        "completed_tasks": 3,
        "completed_percentage": 42.86,
        "by_status": {"todo": 3, "in_progress": 1, "done": 3},
        "by_priority": {"low": 1, "medium": 2, "high": 3, "urgent": 1},
        "overdue": 2,
        "due_next_7_days": 4,
        "completed_last_7_days": 1,
        "generated_at": "2026-11-22T01:30:00+02:00",
        "stale": False,
    }


def test_overview_carries_owners_and_totals() -> None:
    overview = system_overview(aggregates())

    assert overview.owners == 5
    assert overview.total_tasks == 7
    assert overview.completed_tasks == 3
    assert overview.completed_percentage == 42.86
    assert overview.stale is False


def test_activity_days_end_on_the_utc_date_of_generation() -> None:
    # 01:30 at +02:00 is 23:30 UTC the day before: the series must end on that UTC day.
    series = user_activity(aggregates(), days=3)

    assert [row.date for row in series] == [
        dt.date(2026, 11, 19),
        dt.date(2026, 11, 20),
        dt.date(2026, 11, 21),
    ]
