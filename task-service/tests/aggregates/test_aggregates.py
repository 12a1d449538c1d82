"""`/internal/tasks/aggregates` (stats-service's source) against rows with known timestamps."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from task_factories import auth
from task_service.tasks.models import Task

pytestmark = pytest.mark.usefixtures("client")
URL = "/internal/tasks/aggregates"


async def insert(app: FastAPI, **rows: dict[str, Any]) -> None:
    async with app.state.sessionmaker() as session, session.begin():
        for title, row in rows.items():
            status = row.pop("status", "todo")
            created_at = row.pop("created_at", datetime.now(UTC))
            session.add(
                Task(
                    title=title,
                    status=status,
                    priority=row.pop("priority", "medium"),
                    tags=[],
                    created_at=created_at,
                    updated_at=created_at,
                    completed_at=row.pop("completed_at", created_at if status == "done" else None),
                    version=1,
                    **row,
                )
            )


async def test_counts_for_the_callers_visible_tasks(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    now = datetime.now(UTC)
    day = timedelta(days=1)
    await insert(
        app,
        overdue={
            "owner_id": 1,
            "priority": "low",
            "due_date": now - day,
            "created_at": now - 2 * day,
        },
        soon={
            "owner_id": 1,
            "status": "in_progress",
            "priority": "high",
            "due_date": now + 3 * day,
        },
        recent={
            "owner_id": 1,
            "status": "done",
            "priority": "urgent",
            "due_date": now - day,  # done: not overdue
            "created_at": now - 3 * day,
            "completed_at": now - day,
        },
        old={
            "owner_id": 1,
            "status": "done",
            "created_at": now - 40 * day,
            "completed_at": now - 10 * day,
        },
        assigned={"owner_id": 2, "assignee_id": 1, "due_date": now + 10 * day},
        foreign={"owner_id": 3, "due_date": now - day},
        own_and_assigned={"owner_id": 1, "assignee_id": 1, "priority": "low"},
    )
    response = await client.get(URL, headers=auth(1))
    assert response.status_code == 200
    body = response.json()
    assert body["total"] == 6
    assert body["by_status"] == {"todo": 3, "in_progress": 1, "done": 2}
    assert body["by_priority"] == {"low": 2, "medium": 2, "high": 1, "urgent": 1}
    assert body["overdue"] == 1
    assert body["due_next_7_days"] == 1
    assert body["completed_last_7_days"] == 1
    assert body["owners"] == 2
    assert datetime.fromisoformat(body["generated_at"]).tzinfo is not None

    activity = body["activity"]
    today = now.date()
    assert len(activity) == 30
    assert [date.fromisoformat(row["date"]) for row in activity] == [
        today - timedelta(days=offset) for offset in range(29, -1, -1)
    ]
    by_date = {date.fromisoformat(row["date"]): row for row in activity}
    assert by_date[today]["created"] == 3  # soon, assigned, own_and_assigned
    assert by_date[today - 2 * day]["created"] == 1
    assert by_date[today - 3 * day]["created"] == 1
    assert by_date[today - day]["completed"] == 1
    assert by_date[today - 10 * day]["completed"] == 1
    assert sum(row["created"] for row in activity) == 5  # "old" was created 40 days ago
    assert sum(row["completed"] for row in activity) == 2


async def test_activity_window_and_validation(client: httpx.AsyncClient) -> None:
    response = await client.get(URL, params={"activity_days": 1}, headers=auth(1))
    body = response.json()
    assert body["activity"] == [
        {"date": datetime.now(UTC).date().isoformat(), "created": 0, "completed": 0}
    ]
    assert body["total"] == 0
    assert body["by_status"] == {"todo": 0, "in_progress": 0, "done": 0}
    for bad in (0, 366, "x"):
        response = await client.get(URL, params={"activity_days": bad}, headers=auth(1))
        assert response.status_code == 422
    assert (await client.get(URL)).status_code == 401


async def test_system_scope_is_for_superusers(client: httpx.AsyncClient, app: FastAPI) -> None:
    await insert(app, a={"owner_id": 1}, b={"owner_id": 2}, c={"owner_id": 3, "status": "done"})
    response = await client.get(URL, params={"scope": "system"}, headers=auth(1))
    assert response.status_code == 403
    assert response.headers["content-type"].startswith("application/problem+json")
    response = await client.get(URL, params={"scope": "system"}, headers=auth(9, is_superuser=True))
    body = response.json()
    assert (body["total"], body["owners"], body["by_status"]["done"]) == (3, 3, 1)
    mine = (await client.get(URL, headers=auth(9, is_superuser=True))).json()
    assert mine["total"] == 0


async def tag_of(client: httpx.AsyncClient, user_id: int) -> str:
    response = await client.get(URL, headers=auth(user_id))
    assert response.status_code == 200
    return response.headers["ETag"]


async def test_an_unchanged_users_aggregates_answer_304_and_any_change_a_new_tag(
    client: httpx.AsyncClient,
) -> None:
    empty = await tag_of(client, 1)
    unchanged = await client.get(URL, headers={**auth(1), "If-None-Match": empty})
    assert unchanged.status_code == 304
    assert unchanged.content == b""
    assert unchanged.headers["ETag"] == empty

    created = await client.post("/api/v1/tasks/", json={"title": "one"}, headers=auth(1))
    assert created.status_code == 201
    after_create = await client.get(URL, headers={**auth(1), "If-None-Match": empty})
    assert after_create.status_code == 200
    assert after_create.json()["total"] == 1
    tag = after_create.headers["ETag"]
    assert tag != empty

    task_url = f"/api/v1/tasks/{created.json()['id']}"
    steps = [
        lambda: client.patch(f"{task_url}/complete", headers=auth(1)),
        lambda: client.patch(task_url, json={"title": "renamed"}, headers=auth(1)),
        lambda: client.delete(task_url, headers=auth(1)),
    ]
    for step in steps:
        assert (await step()).status_code in (200, 204)
        conditional = await client.get(URL, headers={**auth(1), "If-None-Match": tag})
        assert conditional.status_code == 200
        tag = conditional.headers["ETag"]
    assert conditional.json()["total"] == 0


async def test_the_tag_follows_assignee_and_previous_assignee_only(
    client: httpx.AsyncClient,
) -> None:
    tags = {user_id: await tag_of(client, user_id) for user_id in (1, 2, 3, 4)}
    task = await client.post(
        "/api/v1/tasks/", json={"title": "shared", "assignee_id": 2}, headers=auth(1)
    )
    assert task.status_code == 201
    now = {user_id: await tag_of(client, user_id) for user_id in (1, 2, 3, 4)}
    assert [now[u] != tags[u] for u in (1, 2, 3, 4)] == [True, True, False, False]

    moved = await client.patch(
        f"/api/v1/tasks/{task.json()['id']}", json={"assignee_id": 3}, headers=auth(1)
    )
    assert moved.status_code == 200
    later = {user_id: await tag_of(client, user_id) for user_id in (1, 2, 3, 4)}
    # The previous assignee's figures lost the task: their tag changes too.
    assert [later[u] != now[u] for u in (1, 2, 3, 4)] == [True, True, True, False]


async def test_the_system_scope_has_no_tag(client: httpx.AsyncClient) -> None:
    response = await client.get(URL, params={"scope": "system"}, headers=auth(9, is_superuser=True))
    assert response.status_code == 200
    assert "ETag" not in response.headers


async def test_tasks_stats_compatibility_route(client: httpx.AsyncClient, app: FastAPI) -> None:
    """`GET /api/v1/tasks/stats` (the tasktracker API's summary) is served, not read as a task
    id, and counts the caller's visible tasks; an urgent task counts as high priority."""
    await insert(
        app,
        low_todo={"owner_id": 1, "priority": "low"},
        high_doing={"owner_id": 1, "status": "in_progress", "priority": "high"},
        urgent_done={"owner_id": 1, "status": "done", "priority": "urgent"},
        medium_done={"owner_id": 1, "status": "done"},
        assigned={"owner_id": 2, "assignee_id": 1, "priority": "high"},
        foreign={"owner_id": 3, "status": "done", "priority": "low"},
    )
    response = await client.get("/api/v1/tasks/stats", headers=auth(1))
    assert response.status_code == 200, response.text
    assert response.json() == {
        "total": 5,
        "todo": 2,
        "in_progress": 1,
        "done": 2,
        "completed": 2,
        "high_priority": 3,
        "medium_priority": 1,
        "low_priority": 1,
    }
    stranger = await client.get("/api/v1/tasks/stats", headers=auth(4))
    assert stranger.json()["total"] == 0
    assert (await client.get("/api/v1/tasks/stats")).status_code == 401
    # Task ids are still ids right beside it.
    assert (await client.get("/api/v1/tasks/999999", headers=auth(1))).status_code == 404


async def test_other_methods_on_tasks_stats_are_405(client: httpx.AsyncClient) -> None:
    for method in ("PUT", "PATCH", "DELETE", "POST", "OPTIONS"):
        response = await client.request(method, "/api/v1/tasks/stats", headers=auth(1))
        assert response.status_code == 405, (method, response.text)
        assert response.headers["allow"] == "GET"
