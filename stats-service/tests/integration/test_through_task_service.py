"""stats-service over the real task-service: figures after using the tasks API, per-user
isolation, UTC day boundaries, 100,000 tasks, and task-service stopping."""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
from sqlalchemy import insert, text
from sqlalchemy.ext.asyncio import AsyncEngine
from task_service.tasks.models import Task

Auth = Callable[..., dict[str, str]]
STALE = '110 - "Response is Stale"'


def task_row(
    *,
    owner_id: int,
    created_at: dt.datetime,
    assignee_id: int | None = None,
    status: str = "todo",
    priority: str = "medium",
    due_date: dt.datetime | None = None,
    completed_at: dt.datetime | None = None,
) -> dict[str, object]:
    return {
        "title": "task",
        "owner_id": owner_id,
        "assignee_id": assignee_id,
        "status": status,
        "priority": priority,
        "created_at": created_at,
        "updated_at": created_at,
        "due_date": due_date,
        "completed_at": completed_at,
    }


async def test_figures_follow_tasks_created_and_completed_through_the_api(
    stats_client: httpx.AsyncClient,
    task_client: httpx.AsyncClient,
    task_engine: AsyncEngine,
    auth: Auth,
) -> None:
    alice = auth(11)
    yesterday = (dt.datetime.now(dt.UTC) - dt.timedelta(days=1)).isoformat()
    created = []
    for title, priority, due_date in [
        ("write", "high", yesterday),
        ("test", "urgent", None),
        ("ship", "low", None),
    ]:
        response = await task_client.post(
            "/api/v1/tasks/",
            json={"title": title, "priority": priority, "due_date": due_date},
            headers=alice,
        )
        assert response.status_code == 201, response.text
        created.append(response.json()["id"])
    completed = await task_client.patch(f"/api/v1/tasks/{created[1]}/complete", headers=alice)
    assert completed.status_code == 200, completed.text

    stats = await stats_client.get("/api/v1/stats", headers=alice)
    activity = await stats_client.get("/api/v1/stats/activity?days=7", headers=alice)

    assert stats.status_code == 200
    body = stats.json()
    assert body["total_tasks"] == 3
    assert body["completed_tasks"] == 1
    assert body["completed_percentage"] == 33.33
    assert body["by_status"] == {"todo": 2, "in_progress": 0, "done": 1}
    assert body["by_priority"] == {"low": 1, "medium": 0, "high": 1, "urgent": 1}
    assert body["overdue"] == 1
    assert body["completed_last_7_days"] == 1
    assert body["stale"] is False
    today = dt.datetime.now(dt.UTC).date().isoformat()
    assert [row["date"] for row in activity.json()][-1] == today
    assert activity.json()[-1] == {"date": today, "created": 3, "completed": 1}
    assert sum(row["created"] for row in activity.json()) == 3


async def test_owned_and_assigned_tasks_count_once_and_others_never(
    stats_client: httpx.AsyncClient, task_engine: AsyncEngine, auth: Auth
) -> None:
    now = dt.datetime.now(dt.UTC)
    alice, bob, carol = 21, 22, 23
    rows = [
        task_row(owner_id=alice, created_at=now),
        task_row(
            owner_id=alice, assignee_id=alice, created_at=now, status="done", completed_at=now
        ),
        task_row(owner_id=alice, assignee_id=bob, created_at=now),
        task_row(owner_id=bob, assignee_id=alice, created_at=now, status="in_progress"),
        task_row(owner_id=bob, created_at=now),
        task_row(owner_id=carol, assignee_id=bob, created_at=now, status="done", completed_at=now),
    ]
    async with task_engine.begin() as connection:
        await connection.execute(insert(Task), rows)

    alice_stats = (await stats_client.get("/api/v1/stats/", headers=auth(alice))).json()
    bob_stats = (await stats_client.get("/api/v1/stats/", headers=auth(bob))).json()
    carol_stats = (await stats_client.get("/api/v1/stats/", headers=auth(carol))).json()
    overview = (
        await stats_client.get("/api/v1/stats/overview", headers=auth(99, is_superuser=True))
    ).json()

    assert alice_stats["by_status"] == {"todo": 2, "in_progress": 1, "done": 1}
    assert alice_stats["total_tasks"] == 4
    assert bob_stats["by_status"] == {"todo": 2, "in_progress": 1, "done": 1}
    assert carol_stats["total_tasks"] == 1
    assert overview["total_tasks"] == 6
    assert overview["owners"] == 3
    assert overview["completed_percentage"] == 33.33


async def test_days_are_utc_calendar_days_whatever_the_offset_written(
    stats_client: httpx.AsyncClient, task_engine: AsyncEngine, auth: Auth
) -> None:
    midnight = dt.datetime.now(dt.UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    yesterday_midnight = midnight - dt.timedelta(days=1)
    plus5 = dt.timezone(dt.timedelta(hours=5))
    minus8 = dt.timezone(dt.timedelta(hours=-8))
    before = (yesterday_midnight - dt.timedelta(microseconds=1)).astimezone(plus5)  # 2 days ago
    exactly = yesterday_midnight.astimezone(minus8)  # yesterday, written as the day before
    just_before_today = (midnight - dt.timedelta(seconds=1)).astimezone(plus5)  # yesterday
    rows = [
        task_row(owner_id=31, created_at=before),
        task_row(owner_id=31, created_at=exactly),
        task_row(
            owner_id=31,
            created_at=exactly,
            status="done",
            completed_at=just_before_today,
        ),
    ]
    async with task_engine.begin() as connection:
        await connection.execute(insert(Task), rows)

    response = await stats_client.get("/api/v1/stats/activity?days=3", headers=auth(31))

    assert response.status_code == 200
    days = [(midnight - dt.timedelta(days=n)).date().isoformat() for n in (2, 1, 0)]
    assert response.json() == [
        {"date": days[0], "created": 1, "completed": 0},
        {"date": days[1], "created": 2, "completed": 1},
        {"date": days[2], "created": 0, "completed": 0},
    ]


async def test_100000_tasks_are_counted_exactly_and_quickly(
    stats_client: httpx.AsyncClient, task_engine: AsyncEngine, auth: Auth
) -> None:
    user_id, other = 41, 42
    n = 100_000
    # Row i: owned by the user unless i % 10 == 0 (then assigned to them), status i % 3,
    # priority i % 4, due in (i % 20 - 10) days when i % 2 == 0, created i % 40 days ago.
    async with task_engine.begin() as connection:
        now = (await connection.execute(text("SELECT now()"))).scalar_one()
        await connection.execute(
            text(
                """
                WITH p AS (
                    SELECT CAST(:now AS timestamptz) AS now,
                           CAST(:user AS bigint) AS me,
                           CAST(:other AS bigint) AS other
                )
                INSERT INTO task (title, owner_id, assignee_id, status, priority, due_date,
                                  created_at, updated_at, completed_at)
                SELECT 'bulk',
                       CASE WHEN i % 10 = 0 THEN p.other ELSE p.me END,
                       CASE WHEN i % 10 = 0 THEN p.me END,
                       (ARRAY['todo', 'in_progress', 'done'])[i % 3 + 1],
                       (ARRAY['low', 'medium', 'high', 'urgent'])[i % 4 + 1],
                       CASE WHEN i % 2 = 0
                            THEN p.now + (i % 20 - 10) * interval '1 day' + interval '1 hour'
                       END,
                       p.now - (i % 40) * interval '1 day',
                       p.now - (i % 40) * interval '1 day',
                       CASE WHEN i % 3 = 2 THEN p.now - (i % 40) * interval '1 day' END
                FROM generate_series(1, :n) AS i, p
                """
            ),
            {"user": user_id, "other": other, "now": now, "n": n},
        )
        await connection.execute(text("ANALYZE task"))

    started = time.perf_counter()
    response = await stats_client.get("/api/v1/stats/", headers=auth(user_id))
    elapsed = time.perf_counter() - started

    indices = range(1, n + 1)
    open_due_offsets = [i % 20 - 10 for i in indices if i % 2 == 0 and i % 3 != 2]
    body = response.json()
    assert body["total_tasks"] == n
    assert body["by_status"] == {
        "todo": sum(i % 3 == 0 for i in indices),
        "in_progress": sum(i % 3 == 1 for i in indices),
        "done": sum(i % 3 == 2 for i in indices),
    }
    assert body["by_priority"] == {
        name: sum(i % 4 == k for i in indices)
        for k, name in enumerate(["low", "medium", "high", "urgent"])
    }
    # Due dates sit 1 h past whole days from `now`, so a few seconds of test time change nothing.
    assert body["overdue"] == sum(offset < 0 for offset in open_due_offsets)
    assert body["due_next_7_days"] == sum(0 <= offset < 7 for offset in open_due_offsets)
    assert body["completed_last_7_days"] == sum(i % 3 == 2 and i % 40 < 7 for i in indices)
    assert elapsed < 5, f"{elapsed:.2f}s for 100,000 tasks"


async def test_stopping_task_service_gives_the_last_figures_marked_stale_or_503(
    stats_client: httpx.AsyncClient,
    task_engine: AsyncEngine,
    task_transport: Any,
    expire_fresh_cache: Callable[[], Awaitable[None]],
    auth: Auth,
) -> None:
    now = dt.datetime.now(dt.UTC)
    async with task_engine.begin() as connection:
        await connection.execute(
            insert(Task),
            [
                task_row(owner_id=51, created_at=now),
                task_row(owner_id=51, created_at=now, status="done", completed_at=now),
            ],
        )
    known = (await stats_client.get("/api/v1/stats/", headers=auth(51))).json()
    known_activity = (await stats_client.get("/api/v1/stats/activity", headers=auth(51))).json()
    await expire_fresh_cache()
    task_transport.up = False

    stale = await stats_client.get("/api/v1/stats/", headers=auth(51))
    stale_activity = await stats_client.get("/api/v1/stats/activity", headers=auth(51))
    newcomer = await stats_client.get("/api/v1/stats/", headers=auth(52))
    task_transport.up = True
    recovered = await stats_client.get("/api/v1/stats/", headers=auth(51))

    assert known["completed_tasks"] == 1
    assert stale.status_code == 200
    assert stale.headers["Warning"] == STALE
    assert stale.json() == {**known, "stale": True}
    assert stale_activity.status_code == 200
    assert stale_activity.headers["Warning"] == STALE
    assert stale_activity.json() == known_activity
    assert newcomer.status_code == 503
    assert int(newcomer.headers["Retry-After"]) >= 1
    assert newcomer.headers["Content-Type"] == "application/problem+json"
    assert recovered.status_code == 200
    assert recovered.json()["stale"] is False
    assert "Warning" not in recovered.headers


async def test_a_read_after_a_write_sees_it_with_no_event_delivered(
    stats_client: httpx.AsyncClient, task_client: httpx.AsyncClient, auth: Auth
) -> None:
    # Here task-service publishes its events under another Redis prefix than stats-service
    # reads: nothing invalidates stats-service's cache, only task-service's ETag can.
    bob = auth(12)
    assert (await stats_client.get("/api/v1/stats", headers=bob)).json()["total_tasks"] == 0
    for expected in (1, 2):
        created = await task_client.post("/api/v1/tasks/", json={"title": "t"}, headers=bob)
        assert created.status_code == 201
        stats = await stats_client.get("/api/v1/stats", headers=bob)
        assert stats.json()["total_tasks"] == expected
    done = await task_client.patch(f"/api/v1/tasks/{created.json()['id']}/complete", headers=bob)
    assert done.status_code == 200
    assert (await stats_client.get("/api/v1/stats", headers=bob)).json()["completed_tasks"] == 1
    unchanged = await stats_client.get("/api/v1/stats", headers=bob)
    assert unchanged.json()["completed_tasks"] == 1
