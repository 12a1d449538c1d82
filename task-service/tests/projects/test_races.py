"""Races over real transactions: one member added and removed at once, added twice at once,
and removed while they write."""

from __future__ import annotations

import asyncio

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import select
from task_factories import auth, create_project, create_task
from task_service.projects.models import ProjectMember
from taskflow_kit.testing import another_transaction, until_a_lock_is_awaited

pytestmark = pytest.mark.usefixtures("client")

ROUNDS = 8


async def is_member(app: FastAPI, project_id: int, user_id: int) -> bool:
    async with app.state.sessionmaker() as session:
        found = await session.execute(
            select(ProjectMember.user_id).where(
                ProjectMember.project_id == project_id, ProjectMember.user_id == user_id
            )
        )
        return found.first() is not None


async def test_adding_and_removing_one_member_at_once_ends_in_one_order(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    project = await create_project(client, owner=1)
    members = f"/api/v1/projects/{project['id']}/members"
    outcomes = set()
    for _ in range(ROUNDS):
        added, removed = await asyncio.gather(
            client.post(members, json={"user_id": 3}, headers=auth(1)),
            client.delete(f"{members}/3", headers=auth(1)),
        )
        assert added.status_code == 201, added.text
        assert removed.status_code in (204, 404), removed.text
        # Removed after the add (204): not a member; removal first found nobody (404): member.
        assert await is_member(app, project["id"], 3) is (removed.status_code == 404)
        outcomes.add(removed.status_code)
        if removed.status_code == 404:
            await client.delete(f"{members}/3", headers=auth(1))
    assert outcomes  # each round ended in one of the two serial orders


async def test_adding_one_member_twice_at_once_adds_them_once(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    project = await create_project(client, owner=1, members=[(2, "admin")])
    members = f"/api/v1/projects/{project['id']}/members"
    for _ in range(ROUNDS):
        first, second = await asyncio.gather(
            client.post(members, json={"user_id": 3}, headers=auth(1)),
            client.post(members, json={"user_id": 3, "role": "admin"}, headers=auth(2)),
        )
        assert sorted([first.status_code, second.status_code]) == [201, 409]
        listed = (await client.get(members, headers=auth(1))).json()["members"]
        assert [m["user_id"] for m in listed].count(3) == 1
        assert (await client.delete(f"{members}/3", headers=auth(1))).status_code == 204


async def test_a_member_removed_while_assigning_themselves_is_never_left_assigned(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    project = await create_project(client, owner=1, members=[2])
    members = f"/api/v1/projects/{project['id']}/members"
    seen = set()
    for _ in range(ROUNDS):
        task = await create_task(client, owner=1, project_id=project["id"])
        write, removal = await asyncio.gather(
            client.patch(f"/api/v1/tasks/{task['id']}", json={"assignee_id": 2}, headers=auth(2)),
            client.delete(f"{members}/2", headers=auth(1)),
        )
        assert removal.status_code == 204
        # Either the write came first (and the removal unassigned it) or it found the member
        # gone (404): never a task assigned to someone who is no longer a member.
        assert write.status_code in (200, 404), write.text
        seen.add(write.status_code)
        after = (await client.get(f"/api/v1/tasks/{task['id']}", headers=auth(1))).json()
        assert after["assignee_id"] is None
        assert (await client.get(f"/api/v1/tasks/{task['id']}", headers=auth(2))).status_code == 404
        await client.post(members, json={"user_id": 2}, headers=auth(1))
    assert seen


async def test_a_member_removed_while_creating_never_leaves_a_task_behind_their_back(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    project = await create_project(client, owner=1, members=[2])
    members = f"/api/v1/projects/{project['id']}/members"
    for _ in range(ROUNDS):
        created, removal = await asyncio.gather(
            client.post(
                "/api/v1/tasks/",
                json={"title": "racing", "project_id": project["id"], "assignee_id": 2},
                headers=auth(2),
            ),
            client.delete(f"{members}/2", headers=auth(1)),
        )
        assert removal.status_code == 204
        assert created.status_code in (201, 404), created.text
        if created.status_code == 201:
            task = (
                await client.get(f"/api/v1/tasks/{created.json()['id']}", headers=auth(1))
            ).json()
            assert task["assignee_id"] is None  # created first, then unassigned by the removal
        await client.post(members, json={"user_id": 2}, headers=auth(1))


async def test_a_task_written_into_a_project_being_deleted_never_deadlocks(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    """A project's deletion locks its row, then deletes its members (cascade). A task written
    into the project key-share locked the writer's membership, then the project's row (the
    task's foreign key): the two waited for each other. The writer now locks the project's row
    first, so the deletion's cascade goes through while the writer waits."""
    project = await create_project(client, owner=1, members=[2])

    # Rolled back at the end: the project stays, and the writer goes on.
    async with another_transaction(app.state.pool, commit=False) as deleting:
        await deleting.execute("SELECT 1 FROM project WHERE id = $1 FOR UPDATE", project["id"])
        creating = asyncio.create_task(
            client.post(
                "/api/v1/tasks/",
                json={"title": "late", "project_id": project["id"]},
                headers=auth(2),
            )
        )
        await until_a_lock_is_awaited(app.state.pool)  # the writer waits for the project
        await deleting.execute("SET LOCAL lock_timeout = '300ms'")  # far below 1 s
        await deleting.execute("DELETE FROM project_member WHERE project_id = $1", project["id"])
    response = await asyncio.wait_for(creating, 10)

    assert response.status_code == 201, response.text
