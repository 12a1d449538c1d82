"""Projects on the size-proof listing (issue 16's listing.py): the projects' tasks are a third
branch of the visible union, so cursor pages, every sort, and totals (running counts of personal
tasks plus the projects' tasks counted up to the cap) hold with projects in place."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import text
from task_factories import auth, create_project, create_task
from task_service.tasks import listing

pytestmark = pytest.mark.usefixtures("client")

PRIORITY_RANK = {"low": 0, "medium": 1, "high": 2, "urgent": 3}


async def pages(client: httpx.AsyncClient, user: int, **params: Any) -> list[dict[str, Any]]:
    """Every task of a listing, page by page with the cursor (pages of 2)."""
    seen: list[dict[str, Any]] = []
    cursor = None
    while True:
        query = {**params, "limit": 2, **({"cursor": cursor} if cursor else {})}
        response = await client.get("/api/v1/tasks/", params=query, headers=auth(user))
        assert response.status_code == 200, response.text
        body = response.json()
        seen.extend(body["tasks"])
        cursor = body["next_cursor"]
        if cursor is None:
            return seen


def expected_order(tasks: list[dict[str, Any]], sort_by: str, descending: bool) -> list[int]:
    def key(task: dict[str, Any]) -> Any:
        if sort_by == "priority":
            return PRIORITY_RANK[task["priority"]]
        if sort_by == "due_date":
            # No due date last in both directions.
            far = datetime.max.replace(tzinfo=UTC) if not descending else datetime.min
            due = task["due_date"]
            return datetime.fromisoformat(due) if due else far.replace(tzinfo=UTC)
        return task[sort_by]

    ordered = sorted(tasks, key=lambda task: (key(task), task["id"]), reverse=descending)
    return [task["id"] for task in ordered]


@pytest.mark.parametrize("sort_by", ["created_at", "priority", "due_date", "title"])
@pytest.mark.parametrize("sort_order", ["asc", "desc"])
async def test_cursor_pages_hold_personal_assigned_and_project_tasks_once(
    client: httpx.AsyncClient, sort_by: str, sort_order: str
) -> None:
    project = await create_project(client, owner=2, members=[1])
    soon = datetime.now(UTC) + timedelta(days=3)
    made = [
        await create_task(client, owner=1, title="b mine", priority="high"),
        await create_task(
            client, owner=1, title="a mine", priority="low", due_date=soon.isoformat()
        ),
        await create_task(client, owner=2, title="c given", priority="urgent", assignee_id=1),
        await create_task(
            client, owner=2, title="d board", priority="high", project_id=project["id"]
        ),
        await create_task(
            client,
            owner=1,
            title="e board",
            priority="medium",
            project_id=project["id"],
            due_date=(soon + timedelta(days=1)).isoformat(),
        ),
    ]
    await create_task(client, owner=2, title="not mine", priority="high")
    await create_task(client, owner=3, title="elsewhere", priority="urgent")
    listed = await pages(client, 1, sort_by=sort_by, sort_order=sort_order)
    assert [task["id"] for task in listed] == expected_order(made, sort_by, sort_order == "desc")
    board = await pages(client, 2, project_id=project["id"], sort_by=sort_by, sort_order=sort_order)
    assert [task["id"] for task in board] == expected_order(made[3:], sort_by, sort_order == "desc")


async def test_totals_count_the_projects_tasks_once_and_forget_them_on_leaving(
    client: httpx.AsyncClient,
) -> None:
    project = await create_project(client, owner=2, members=[1])
    await create_task(client, owner=1, title="mine", status="done")
    await create_task(client, owner=1, title="board, mine", project_id=project["id"])
    await create_task(client, owner=2, title="board, theirs", project_id=project["id"])

    async def total(user: int, **params: Any) -> tuple[int, bool]:
        response = await client.get(
            "/api/v1/tasks/", params={"limit": 1, **params}, headers=auth(user)
        )
        assert response.status_code == 200, response.text
        return response.json()["total"], response.json()["total_exact"]

    assert await total(1) == (3, True)
    assert await total(1, scope="owned") == (2, True)
    assert await total(1, status="todo") == (2, True)
    assert await total(2) == (2, True)
    stats = (await client.get("/internal/tasks/aggregates", headers=auth(1))).json()
    assert (stats["total"], stats["by_status"]["todo"], stats["owners"]) == (3, 2, 2)

    left = await client.delete(f"/api/v1/projects/{project['id']}/members/1", headers=auth(1))
    assert left.status_code == 204
    # The board task 1 created is the project's: it leaves 1's totals with the membership.
    assert await total(1) == (1, True)
    assert await total(1, scope="owned") == (1, True)
    stats = (await client.get("/internal/tasks/aggregates", headers=auth(1))).json()
    assert (stats["total"], stats["by_status"]["todo"], stats["owners"]) == (1, 0, 1)
    assert await total(2) == (2, True)


async def test_a_big_projects_total_is_counted_up_to_the_cap(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    project = await create_project(client, owner=1, members=[2])
    await create_task(client, owner=2, title="personal")
    async with app.state.engine.begin() as connection:
        await connection.execute(
            text(
                "INSERT INTO task (title, status, priority, tags, owner_id, project_id, "
                "created_at, updated_at, version) SELECT 't' || g, 'todo', 'medium', '{}', 1, "
                ":project, now(), now(), 1 FROM generate_series(1, :n) g"
            ),
            {"project": project["id"], "n": listing.TOTAL_CAP + 5},
        )
    whole = await client.get("/api/v1/tasks/", params={"limit": 1}, headers=auth(2))
    body = whole.json()
    assert (body["total"], body["total_exact"]) == (1 + listing.TOTAL_CAP, False)
    board = await client.get(
        "/api/v1/tasks/", params={"limit": 1, "project_id": project["id"]}, headers=auth(2)
    )
    body = board.json()
    assert (body["total"], body["total_exact"]) == (listing.TOTAL_CAP, False)
    # The figures are exact however many tasks the board holds, and the running counts (of
    # personal tasks) never saw the board's.
    stats = (await client.get("/internal/tasks/aggregates", headers=auth(2))).json()
    assert stats["total"] == 1 + listing.TOTAL_CAP + 5
    async with app.state.engine.begin() as connection:
        tallied = await connection.scalar(
            text("SELECT coalesce(sum(tasks), 0) FROM task_tally WHERE user_id = 1")
        )
    assert tallied == 0
