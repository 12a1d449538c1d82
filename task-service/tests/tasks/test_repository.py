"""The data layer on asyncpg (real PostgreSQL): statements compiled once per shape, every
listing shape valid SQL, rows as the API shows them, and a write's transaction boundaries."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from task_factories import auth, create_task
from task_service.tasks import listing
from task_service.tasks.listing import ListShape
from task_service.tasks.repository import TaskRepository
from task_service.tasks.schemas import TaskFilter

pytestmark = pytest.mark.usefixtures("client")


@pytest.mark.parametrize(
    ("query", "compiled"),
    [
        ("sort_by=priority&sort_order=asc&limit=5", listing.list_statements),
        # A filter the running counts do not keep: its page is found among its matches.
        ("tags=work&sort_by=priority&sort_order=asc&limit=5", listing.match_statements),
    ],
    ids=["counted shape", "matched shape"],
)
async def test_a_listing_shape_is_compiled_once(
    client: httpx.AsyncClient, query: str, compiled: Any
) -> None:
    await create_task(client, title="one", tags=["work"])
    url = f"/api/v1/tasks/?{query}"
    assert (await client.get(url, headers=auth(1))).status_code == 200
    before = compiled.cache_info()
    for user_id in (1, 2, 3):
        response = await client.get(url, headers=auth(user_id))
        assert response.status_code == 200
    after = compiled.cache_info()
    assert after.misses == before.misses  # the same shape, whoever asks and whatever the values
    assert after.hits == before.hits + 3


async def test_every_filter_and_sort_is_valid_sql_and_agrees_with_python(app: FastAPI) -> None:
    now = datetime.now(UTC)
    async with app.state.pool.acquire() as connection:
        tasks = TaskRepository(connection)
        made = [
            await tasks.insert(
                {
                    "title": f"task {n} report" if n % 2 else f"task {n}",
                    "description": None,
                    "status": ("todo", "in_progress", "done")[n % 3],
                    "priority": ("low", "medium", "high", "urgent")[n % 4],
                    "due_date": now + timedelta(days=n - 3) if n % 3 else None,
                    "tags": ["work"] if n % 2 else ["home"],
                    "owner_id": 1,
                    "assignee_id": 2 if n % 4 == 0 else None,
                    "completed_at": now if n % 3 == 2 else None,
                },
                now,
            )
            for n in range(12)
        ]
        matched = 0
        flags = itertools.product(
            ("all", "owned", "assigned"), ("created_at", "priority", "title", "due_date")
        )
        for scope, sort_by in flags:
            task_filter = TaskFilter(
                scope=scope,
                statuses=["todo", "in_progress"],
                priorities=["high", "urgent", "low"],
                tags=["work"],
                search="REPORT",
                due_after=now - timedelta(days=30),
                due_before=now + timedelta(days=30),
                overdue=False,
                sort_by=sort_by,
                sort_order="asc",
                limit=100,
            )
            found = await tasks.find_page(task_filter, 1, now)
            page, total = found.tasks, found.total
            expected = [
                task
                for task in made
                if (scope != "assigned" or task.assignee_id == 1)
                and task.status in ("todo", "in_progress")
                and task.priority in ("high", "urgent", "low")
                and "work" in task.tags
                and "report" in task.title
                and task.due_date is not None
                and now - timedelta(days=30) <= task.due_date < now + timedelta(days=30)
                and task.due_date >= now
            ]
            assert total == len(expected), (scope, sort_by)
            assert {task.id for task in page} == {task.id for task in expected}
            matched += total
    assert matched == 8  # task 7, found by "all" and "owned" under each of the four sorts
    assert len({ListShape.of(TaskFilter(scope=s)) for s in ("all", "owned", "assigned")}) == 3


async def test_rows_come_back_as_the_api_shows_them(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    first = await create_task(client, title="first")
    second = await create_task(client, title="second", depends_on=[first["id"]], tags=["A", "b"])
    async with app.state.pool.acquire() as connection:
        read = await TaskRepository(connection).get_visible(second["id"], 1)
    assert read is not None
    api = (await client.get(f"/api/v1/tasks/{second['id']}", headers=auth(1))).json()
    assert read.model_dump(mode="json") == api
    assert (read.depends_on, read.blocked, read.tags) == ([first["id"]], True, ["a", "b"])


async def test_an_update_names_only_updatable_columns(app: FastAPI) -> None:
    async with app.state.pool.acquire() as connection:
        with pytest.raises(ValueError, match="owner_id"):
            await TaskRepository(connection).update(1, {"owner_id": 2})


async def test_a_refused_write_leaves_nothing_behind(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    # The task is inserted, then its status is refused (a dependency is not done): the request's
    # transaction rolls back the task, its edges and its event together.
    blocker = await create_task(client, title="blocker")
    await create_task(
        client, title="done too early", status="done", depends_on=[blocker["id"]], expect=409
    )
    async with app.state.pool.acquire() as connection:
        titles = [row[0] for row in await connection.fetch("SELECT title FROM task ORDER BY id")]
        events = await connection.fetchval("SELECT count(*) FROM outbox")
    assert titles == ["blocker"]
    assert events == 1  # blocker's task.created only
