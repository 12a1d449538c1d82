"""Statistics through the real task-service equal a plain-Python count of the same tasks.

Rows are written straight into task-service's database so that created/due/completed times
can sit exactly around the moments that matter (now, now + 7 days, now - 7 days, UTC
midnight), written with random UTC offsets, on a database whose session zone is UTC+14. The
reference is evaluated at the `generated_at` task-service reports, which is its "now".
"""

from __future__ import annotations

import datetime as dt
import itertools
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import httpx
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import delete, insert
from sqlalchemy.ext.asyncio import AsyncEngine
from task_service.tasks.models import Task

STATUSES = ("todo", "in_progress", "done")
PRIORITIES = ("low", "medium", "high", "urgent")
WEEK = dt.timedelta(days=7)
Auth = Callable[..., dict[str, str]]

# Every example uses users no earlier example used, so no cached answer can leak between them.
_user_ids = itertools.count(1000, 10)


@dataclass(frozen=True)
class Row:
    owner_id: int
    assignee_id: int | None
    status: str
    priority: str
    created_at: dt.datetime
    due_date: dt.datetime | None
    completed_at: dt.datetime | None


# -- the plain-Python reference --------------------------------------------------------------


def half_up_percentage(done: int, total: int) -> float:
    if total == 0:
        return 0.0
    return int(Fraction(done * 10000, total) + Fraction(1, 2)) / 100


def counts(rows: list[Row], now: dt.datetime) -> dict[str, Any]:
    done = sum(row.status == "done" for row in rows)
    open_due = [row.due_date for row in rows if row.status != "done" and row.due_date is not None]
    return {
        "total_tasks": len(rows),
        "completed_tasks": done,
        "completed_percentage": half_up_percentage(done, len(rows)),
        "by_status": {name: sum(row.status == name for row in rows) for name in STATUSES},
        "by_priority": {name: sum(row.priority == name for row in rows) for name in PRIORITIES},
        "overdue": sum(due < now for due in open_due),
        "due_next_7_days": sum(now <= due < now + WEEK for due in open_due),
        "completed_last_7_days": sum(
            row.completed_at is not None and row.completed_at >= now - WEEK for row in rows
        ),
        "owners": len({row.owner_id for row in rows}),
    }


def reference_stats(rows: list[Row], user_id: int, now: dt.datetime) -> dict[str, Any]:
    visible = [row for row in rows if user_id in (row.owner_id, row.assignee_id)]
    expected = counts(visible, now)
    del expected["owners"]
    return expected


def reference_overview(rows: list[Row], now: dt.datetime) -> dict[str, Any]:
    expected = counts(rows, now)
    del expected["due_next_7_days"], expected["completed_last_7_days"]
    return expected


def reference_activity(rows: list[Row], user_id: int, now: dt.datetime, days: int) -> list[Any]:
    visible = [row for row in rows if user_id in (row.owner_id, row.assignee_id)]
    today = now.astimezone(dt.UTC).date()
    series = []
    for offset in range(days - 1, -1, -1):
        day = today - dt.timedelta(days=offset)
        created = sum(row.created_at.astimezone(dt.UTC).date() == day for row in visible)
        completed = sum(
            row.completed_at is not None and row.completed_at.astimezone(dt.UTC).date() == day
            for row in visible
        )
        series.append({"date": day.isoformat(), "created": created, "completed": completed})
    return series


# -- random task sets around the boundaries ---------------------------------------------------

offsets = st.integers(-14 * 60, 14 * 60).map(
    lambda minutes: dt.timezone(dt.timedelta(minutes=minutes))
)
jitter = st.integers(-3000, 3000).map(lambda ms: dt.timedelta(milliseconds=ms))


def near(anchor: dt.datetime) -> st.SearchStrategy[dt.datetime]:
    """A moment within 3 s of `anchor`, written in a random UTC offset."""
    return st.builds(lambda delta, zone: (anchor + delta).astimezone(zone), jitter, offsets)


def moments(now: dt.datetime, anchors: list[dt.datetime]) -> st.SearchStrategy[dt.datetime]:
    spread = st.builds(
        lambda seconds, zone: (now - dt.timedelta(seconds=seconds)).astimezone(zone),
        st.integers(0, 40 * 86400),
        offsets,
    )
    return st.one_of(spread, *(near(anchor) for anchor in anchors))


@st.composite
def task_rows(draw: st.DrawFn, *, now: dt.datetime, user_id: int) -> Row:
    other, third = user_id + 1, user_id + 2
    owner_id, assignee_id = draw(
        st.sampled_from(
            [
                (user_id, None),  # owned
                (user_id, user_id),  # owned and assigned: counted once
                (user_id, other),  # owned, assigned to someone else
                (other, user_id),  # assigned
                (other, None),  # someone else's: never counted for the user
                (other, third),
            ]
        )
    )
    midnight = now.replace(hour=0, minute=0, second=0, microsecond=0)
    past_midnights = [midnight - dt.timedelta(days=n) for n in (0, 1, 6, 7, 29, 30)]
    created_at = min(draw(moments(now, [now, *past_midnights])), now - dt.timedelta(seconds=5))
    status = draw(st.sampled_from(STATUSES))
    completed_at = None
    if status == "done":
        completed_at = min(draw(moments(now, [now, now - WEEK, *past_midnights])), now)
    due_date = draw(
        st.one_of(
            st.none(),
            near(now),
            near(now + WEEK),
            st.builds(
                lambda hours, zone: (now + dt.timedelta(hours=hours)).astimezone(zone),
                st.integers(-30 * 24, 30 * 24),
                offsets,
            ),
        )
    )
    return Row(
        owner_id=owner_id,
        assignee_id=assignee_id,
        status=status,
        priority=draw(st.sampled_from(PRIORITIES)),
        created_at=created_at,
        due_date=due_date,
        completed_at=completed_at,
    )


async def write(engine: AsyncEngine, rows: list[Row]) -> None:
    if not rows:
        return
    values = [
        {
            "title": f"task {index}",
            "status": row.status,
            "priority": row.priority,
            "owner_id": row.owner_id,
            "assignee_id": row.assignee_id,
            "created_at": row.created_at,
            "updated_at": row.created_at,
            "due_date": row.due_date,
            "completed_at": row.completed_at,
        }
        for index, row in enumerate(rows)
    ]
    async with engine.begin() as connection:
        await connection.execute(insert(Task), values)


def generated_at(body: dict[str, Any]) -> dt.datetime:
    return dt.datetime.fromisoformat(body["generated_at"])


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=st.data())
async def test_stats_activity_and_overview_equal_a_plain_python_count(
    data: st.DataObject,
    stats_client: httpx.AsyncClient,
    task_engine: AsyncEngine,
    auth: Auth,
    clear_stats_cache: Callable[[], Awaitable[None]],
) -> None:
    async with task_engine.begin() as connection:
        await connection.execute(delete(Task))
    await clear_stats_cache()
    user_id = next(_user_ids)
    now = dt.datetime.now(dt.UTC)
    rows = data.draw(st.lists(task_rows(now=now, user_id=user_id), max_size=25), label="rows")
    days = data.draw(st.integers(1, 45), label="days")
    await write(task_engine, rows)
    admin = auth(user_id + 9, is_superuser=True)

    stats = await stats_client.get("/api/v1/stats/", headers=auth(user_id))
    activity = await stats_client.get(
        "/api/v1/stats/activity", params={"days": days}, headers=auth(user_id)
    )
    overview = await stats_client.get("/api/v1/stats/overview", headers=admin)

    assert stats.status_code == activity.status_code == overview.status_code == 200
    stats_body = stats.json()
    assert stats_body.pop("stale") is False
    assert {**stats_body, "generated_at": None} == {
        **reference_stats(rows, user_id, generated_at(stats_body)),
        "generated_at": None,
    }
    # task-service's "now" for the activity call is not reported; the series ends on the UTC
    # date of the stats call made just before (a midnight between the two is retried below).
    expected_days = reference_activity(rows, user_id, generated_at(stats_body), days)
    if activity.json()[-1]["date"] != expected_days[-1]["date"]:
        expected_days = reference_activity(rows, user_id, dt.datetime.now(dt.UTC), days)
    assert activity.json() == expected_days
    overview_body = overview.json()
    assert overview_body.pop("stale") is False
    assert {**overview_body, "generated_at": None} == {
        **reference_overview(rows, generated_at(overview_body)),
        "generated_at": None,
    }
