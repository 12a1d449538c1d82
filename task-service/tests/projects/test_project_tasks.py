"""A project's tasks: seen and edited by its members only, assigned to members, dependencies
within the project, and what removal, leaving, deletion and accounts ending do to them."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import func, select
from task_factories import FakeUserService, auth, create_project, create_task
from task_service.events import UserEventHandler
from task_service.tasks.events import OUTBOX
from task_service.tasks.models import Task
from taskflow_kit.events import Event

pytestmark = pytest.mark.usefixtures("client")


async def task_events(app: FastAPI, task_id: int) -> list[dict[str, Any]]:
    async with app.state.sessionmaker() as session:
        rows = await session.execute(
            select(OUTBOX.c.payload)
            .where(OUTBOX.c.type.startswith("task."), OUTBOX.c.subject_id == str(task_id))
            .order_by(OUTBOX.c.id)
        )
        return [json.loads(payload) for payload in rows.scalars()]


async def listed(client: httpx.AsyncClient, user: int, **params: Any) -> list[int]:
    response = await client.get("/api/v1/tasks/", params=params, headers=auth(user))
    assert response.status_code == 200, response.text
    return sorted(task["id"] for task in response.json()["tasks"])


async def user_event(app: FastAPI, type_: str, data: dict[str, Any]) -> None:
    handler = UserEventHandler(
        app.state.sessionmaker, outbox=app.state.outbox, user_client=app.state.user_client
    )
    await handler(
        Event(
            id=uuid.uuid4(),
            type=type_,
            producer="user-service",
            subject_id=str(data.get("user_id") or data["user"]["id"]),
            data=data,
            occurred_at=datetime.now(UTC),
        )
    )


async def test_members_see_a_project_task_and_nobody_else_does(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    project = await create_project(client, owner=1, members=[2])
    shared = await create_task(client, owner=1, title="shared", project_id=project["id"])
    assert shared["project_id"] == project["id"]
    personal = await create_task(client, owner=1, title="mine")
    assert personal["project_id"] is None
    theirs = await create_task(client, owner=2, title="theirs")
    assert await listed(client, 1) == sorted([shared["id"], personal["id"]])
    assert await listed(client, 2) == sorted([shared["id"], theirs["id"]])
    assert await listed(client, 3) == []
    assert await listed(client, 2, project_id=project["id"]) == [shared["id"]]
    for user, status in ((2, 200), (3, 404)):
        response = await client.get(f"/api/v1/tasks/{shared['id']}", headers=auth(user))
        assert response.status_code == status
    outsider = await client.get(
        "/api/v1/tasks/", params={"project_id": project["id"]}, headers=auth(3)
    )
    assert outsider.status_code == 404
    assert outsider.json()["detail"] == f"Project {project['id']} not found"
    [created] = await task_events(app, shared["id"])
    assert created["data"]["audience"] == [1, 2]
    assert created["data"]["project_id"] == project["id"]


async def test_every_filter_sort_and_page_works_within_a_project(
    client: httpx.AsyncClient,
) -> None:
    project = await create_project(client, owner=1, members=[2])
    ids = [
        (
            await create_task(
                client,
                owner=owner,
                title=f"t{n}",
                priority=priority,
                tags=tags,
                project_id=project["id"],
            )
        )["id"]
        for n, (owner, priority, tags) in enumerate(
            [(1, "low", ["a"]), (2, "urgent", ["a", "b"]), (1, "high", []), (2, "medium", ["b"])]
        )
    ]
    await create_task(client, owner=1, title="t-personal", priority="urgent", tags=["a"])
    scoped = {"project_id": project["id"]}
    assert await listed(client, 1, **scoped, tags="a") == sorted([ids[0], ids[1]])
    assert await listed(client, 1, **scoped, scope="owned") == sorted([ids[0], ids[2]])
    assert await listed(client, 2, **scoped, priority="urgent") == [ids[1]]
    assert await listed(client, 1, **scoped, search="t3") == [ids[3]]
    response = await client.get(
        "/api/v1/tasks/",
        params={**scoped, "sort_by": "priority", "sort_order": "desc", "limit": 2, "skip": 1},
        headers=auth(2),
    )
    page = response.json()
    assert page["total"] == 4
    assert [task["id"] for task in page["tasks"]] == [ids[2], ids[3]]


async def test_creating_in_a_project_is_for_members_and_assignees_must_be_members(
    client: httpx.AsyncClient,
) -> None:
    project = await create_project(client, owner=1, members=[2])
    outsider = await client.post(
        "/api/v1/tasks/", json={"title": "x", "project_id": project["id"]}, headers=auth(3)
    )
    assert outsider.status_code == 404
    missing = await client.post(
        "/api/v1/tasks/", json={"title": "x", "project_id": 999999}, headers=auth(1)
    )
    assert missing.status_code == 404
    not_member = await client.post(
        "/api/v1/tasks/",
        json={"title": "x", "project_id": project["id"], "assignee_id": 3},
        headers=auth(1),
    )
    assert not_member.status_code == 422
    assert not_member.json()["errors"][0]["loc"] == ["body", "assignee_id"]
    task = await create_task(client, owner=2, project_id=project["id"], assignee_id=1)
    moved_to_outsider = await client.patch(
        f"/api/v1/tasks/{task['id']}", json={"assignee_id": 3}, headers=auth(1)
    )
    assert moved_to_outsider.status_code == 422
    moving = await client.patch(
        f"/api/v1/tasks/{task['id']}", json={"project_id": None}, headers=auth(2)
    )
    assert moving.status_code == 422  # a task does not move between projects


async def test_every_member_edits_and_only_the_creator_or_managers_delete(
    client: httpx.AsyncClient,
) -> None:
    project = await create_project(client, owner=1, members=[2, 3, (4, "admin")])
    task = await create_task(client, owner=2, project_id=project["id"])
    url = f"/api/v1/tasks/{task['id']}"
    edited = await client.patch(
        url, json={"title": "edited by 3", "assignee_id": 4}, headers=auth(3)
    )
    assert edited.status_code == 200, edited.text
    assert (edited.json()["title"], edited.json()["assignee_id"]) == ("edited by 3", 4)
    stale = await client.patch(url, json={"title": "x"}, headers={**auth(1), "If-Match": 'W/"1"'})
    assert stale.status_code == 412
    assert (await client.delete(url, headers=auth(3))).status_code == 403
    assert (await client.delete(url, headers=auth(4))).status_code == 204
    other = await create_task(client, owner=3, project_id=project["id"])
    assert (await client.delete(f"/api/v1/tasks/{other['id']}", headers=auth(3))).status_code == 204


async def test_dependencies_stay_within_a_project(client: httpx.AsyncClient) -> None:
    project = await create_project(client, owner=1, members=[2])
    other = await create_project(client, owner=1, name="other")
    a = await create_task(client, owner=1, project_id=project["id"])
    b = await create_task(client, owner=2, project_id=project["id"], depends_on=[a["id"]])
    assert b["depends_on"] == [a["id"]]
    personal = await create_task(client, owner=1)
    elsewhere = await create_task(client, owner=1, project_id=other["id"])
    for source, target in ((a, personal), (personal, a), (a, elsewhere)):
        response = await client.post(
            f"/api/v1/tasks/{source['id']}/dependencies",
            json={"depends_on_id": target["id"]},
            headers=auth(1),
        )
        assert response.status_code == 422, (source["id"], target["id"], response.text)
    across = await client.post(
        "/api/v1/tasks/",
        json={"title": "x", "project_id": project["id"], "depends_on": [personal["id"]]},
        headers=auth(1),
    )
    assert across.status_code == 422
    # Any member changes a project task's dependencies (2 did not create `a`).
    c = await create_task(client, owner=1, project_id=project["id"])
    added = await client.post(
        f"/api/v1/tasks/{c['id']}/dependencies", json={"depends_on_id": a["id"]}, headers=auth(2)
    )
    assert added.status_code == 201
    tree = await client.get(f"/api/v1/tasks/{b['id']}/dependency-tree", headers=auth(2))
    assert tree.json()["dependencies"][0]["visible"] is True


async def test_a_removed_member_loses_the_tasks_and_is_unassigned(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    project = await create_project(client, owner=1, members=[2, 3])
    assigned = await create_task(client, owner=1, project_id=project["id"], assignee_id=2)
    created = await create_task(client, owner=2, project_id=project["id"])
    personal = await create_task(client, owner=1, assignee_id=2)
    removed = await client.delete(f"/api/v1/projects/{project['id']}/members/2", headers=auth(1))
    assert removed.status_code == 204
    for task in (assigned, created):
        assert (await client.get(f"/api/v1/tasks/{task['id']}", headers=auth(2))).status_code == 404
    assert await listed(client, 2) == [personal["id"]]  # a personal assignment is not the project's
    after = (await client.get(f"/api/v1/tasks/{assigned['id']}", headers=auth(3))).json()
    assert after["assignee_id"] is None
    # The board keeps the task its former member created.
    assert (await client.get(f"/api/v1/tasks/{created['id']}", headers=auth(3))).status_code == 200
    unassigned = (await task_events(app, assigned["id"]))[-1]
    assert unassigned["type"] == "task.assigned"
    assert unassigned["data"]["previous_assignee_id"] == 2
    assert unassigned["data"]["audience"] == [1, 3]
    # Leaving works the same way.
    mine = await create_task(client, owner=1, project_id=project["id"], assignee_id=3)
    left = await client.delete(f"/api/v1/projects/{project['id']}/members/3", headers=auth(3))
    assert left.status_code == 204
    assert (await client.get(f"/api/v1/tasks/{mine['id']}", headers=auth(1))).json()[
        "assignee_id"
    ] is None
    assert await listed(client, 3) == []


async def test_deleting_a_project_deletes_its_tasks(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    project = await create_project(client, owner=1, members=[2])
    a = await create_task(client, owner=1, project_id=project["id"])
    await create_task(client, owner=2, project_id=project["id"], depends_on=[a["id"]])
    personal = await create_task(client, owner=1)
    assert (
        await client.delete(f"/api/v1/projects/{project['id']}", headers=auth(1))
    ).status_code == 204
    assert await listed(client, 1) == [personal["id"]]
    assert await listed(client, 2) == []
    async with app.state.sessionmaker() as session:
        left = await session.execute(select(func.count()).select_from(Task))
        assert left.scalar_one() == 1


async def test_a_deleted_account_leaves_its_projects_which_pass_on(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    shared = await create_project(client, owner=1, name="shared", members=[2, (3, "admin")])
    alone = await create_project(client, owner=1, name="alone")
    joined = await create_project(client, owner=2, name="joined", members=[1])
    created = await create_task(client, owner=1, project_id=shared["id"], assignee_id=1)
    in_joined = await create_task(client, owner=2, project_id=joined["id"], assignee_id=1)
    await create_task(client, owner=1, project_id=alone["id"])
    await user_event(app, "user.deleted", {"user_id": 1})
    taken_over = (await client.get(f"/api/v1/projects/{shared['id']}", headers=auth(3))).json()
    assert (taken_over["owner_id"], taken_over["role"], taken_over["member_count"]) == (
        3,
        "owner",
        2,
    )
    assert (await client.get(f"/api/v1/projects/{alone['id']}", headers=auth(1))).status_code == 404
    members = (await client.get(f"/api/v1/projects/{joined['id']}/members", headers=auth(2))).json()
    assert [m["user_id"] for m in members["members"]] == [2]
    kept = (await client.get(f"/api/v1/tasks/{created['id']}", headers=auth(2))).json()
    assert (kept["owner_id"], kept["assignee_id"]) == (1, None)
    unassigned = (await client.get(f"/api/v1/tasks/{in_joined['id']}", headers=auth(2))).json()
    assert unassigned["assignee_id"] is None
    async with app.state.sessionmaker() as session:
        remaining = await session.execute(select(func.count()).select_from(Task))
        assert remaining.scalar_one() == 2  # the alone project's task went with it


async def test_a_deactivated_account_keeps_its_memberships_but_not_its_assignments(
    client: httpx.AsyncClient, app: FastAPI, user_service: FakeUserService
) -> None:
    project = await create_project(client, owner=1, members=[2])
    task = await create_task(client, owner=1, project_id=project["id"], assignee_id=2)
    personal = await create_task(client, owner=1, assignee_id=2)
    await user_event(
        app, "user.updated", {"user": {"id": 2, "username": "user2", "is_active": False}}
    )
    after = (await client.get(f"/api/v1/tasks/{task['id']}", headers=auth(1))).json()
    assert after["assignee_id"] is None
    kept = (await client.get(f"/api/v1/tasks/{personal['id']}", headers=auth(1))).json()
    assert kept["assignee_id"] == 2  # personal tasks behave as before
    members = (
        await client.get(f"/api/v1/projects/{project['id']}/members", headers=auth(1))
    ).json()
    assert [(m["user_id"], m["username"]) for m in members["members"]] == [(1, None), (2, "user2")]
    inactive = await client.post(
        f"/api/v1/projects/{project['id']}/members", json={"user_id": 2}, headers=auth(1)
    )
    assert inactive.status_code == 422  # an inactive account is not added (again)


async def test_project_aggregates_are_for_members(client: httpx.AsyncClient) -> None:
    project = await create_project(client, owner=1, members=[2])
    await create_task(client, owner=1, project_id=project["id"], status="done")
    await create_task(client, owner=2, project_id=project["id"], priority="urgent")
    await create_task(client, owner=1, title="personal")
    url = "/internal/tasks/aggregates"
    member = await client.get(url, params={"project_id": project["id"]}, headers=auth(2))
    assert member.status_code == 200
    body = member.json()
    assert (body["total"], body["by_status"]["done"], body["by_priority"]["urgent"]) == (2, 1, 1)
    mine = (await client.get(url, headers=auth(1))).json()
    assert mine["total"] == 3  # a person's figures count the projects' tasks they see
    outsider = await client.get(url, params={"project_id": project["id"]}, headers=auth(3))
    assert outsider.status_code == 404


async def test_a_change_by_one_member_is_a_new_version_of_every_members_figures(
    client: httpx.AsyncClient,
) -> None:
    project = await create_project(client, owner=1, members=[2])
    task = await create_task(client, owner=1, project_id=project["id"])
    url = "/internal/tasks/aggregates"
    tags = {}
    for params in ({}, {"project_id": project["id"]}):
        first = await client.get(url, params=params, headers=auth(2))
        tags[bool(params)] = first.headers["ETag"]
        again = await client.get(
            url, params=params, headers={**auth(2), "If-None-Match": first.headers["ETag"]}
        )
        assert again.status_code == 304
    assert tags[True] != tags[False]  # a project's figures are not the person's
    await client.patch(f"/api/v1/tasks/{task['id']}", json={"title": "by 1"}, headers=auth(1))
    for params in ({}, {"project_id": project["id"]}):
        after = await client.get(
            url, params=params, headers={**auth(2), "If-None-Match": tags[bool(params)]}
        )
        assert after.status_code == 200  # 1's edit changed what 2 sees
    # Joining changes what a member sees too.
    await client.post(
        f"/api/v1/projects/{project['id']}/members", json={"user_id": 3}, headers=auth(1)
    )
    joined = await client.get(url, headers=auth(3))
    assert joined.json()["total"] == 1
