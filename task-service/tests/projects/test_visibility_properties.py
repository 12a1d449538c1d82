"""Hypothesis against a plain-Python reference: who sees which task, with projects.

A random world of users, projects with members, and tasks (personal or in a project, with an
owner and maybe an assignee) is written straight to the database; every user's list, each
project's list, single reads and the aggregates' total must agree with the reference rule:
a personal task is seen by its owner and assignee, a project's task by its members only."""

from __future__ import annotations

from datetime import UTC, datetime

import httpx
import pytest
from fastapi import FastAPI
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from task_factories import auth
from task_service.database import Base
from task_service.projects.models import Project, ProjectMember
from task_service.tasks.models import Task
from taskflow_kit.testing import empty_tables

pytestmark = pytest.mark.usefixtures("client")

USERS = range(1, 5)
PROJECTS = 3

world = st.tuples(
    # members of each project (the first one listed is its owner)
    st.lists(st.sets(st.sampled_from(USERS), min_size=1), min_size=PROJECTS, max_size=PROJECTS),
    # tasks: (owner, assignee or None, project index or None)
    st.lists(
        st.tuples(
            st.sampled_from(USERS),
            st.none() | st.sampled_from(USERS),
            st.none() | st.integers(0, PROJECTS - 1),
        ),
        max_size=10,
    ),
)


def sees(user: int, task: tuple[int, int | None, int | None], members: list[set[int]]) -> bool:
    owner, assignee, project = task
    if project is None:
        return user in (owner, assignee)
    return user in members[project]


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(world=world)
async def test_who_sees_what_matches_the_reference(
    client: httpx.AsyncClient,
    app: FastAPI,
    world: tuple[list[set[int]], list[tuple[int, int | None, int | None]]],
) -> None:
    members, tasks = world
    await empty_tables(app.state.engine, Base.metadata)
    now = datetime.now(UTC)
    async with app.state.sessionmaker() as session, session.begin():
        projects = [
            Project(
                name=f"p{n}",
                owner_id=min(group),
                created_at=now,
                updated_at=now,
                version=1,
            )
            for n, group in enumerate(members)
        ]
        session.add_all(projects)
        await session.flush()
        session.add_all(
            ProjectMember(
                project_id=project.id,
                user_id=user,
                role="owner" if user == project.owner_id else "member",
                added_at=now,
            )
            for project, group in zip(projects, members, strict=True)
            for user in group
        )
        rows = [
            Task(
                title=f"t{n}",
                status="todo",
                priority="medium",
                tags=[],
                owner_id=owner,
                assignee_id=assignee,
                project_id=None if project is None else projects[project].id,
                created_at=now,
                updated_at=now,
                version=1,
            )
            for n, (owner, assignee, project) in enumerate(tasks)
        ]
        session.add_all(rows)
        await session.flush()
        ids = [row.id for row in rows]
        project_ids = [project.id for project in projects]
    for user in USERS:
        expected = {ids[n] for n, task in enumerate(tasks) if sees(user, task, members)}
        response = await client.get("/api/v1/tasks/", params={"limit": 100}, headers=auth(user))
        assert {task["id"] for task in response.json()["tasks"]} == expected
        aggregates = await client.get("/internal/tasks/aggregates", headers=auth(user))
        assert aggregates.json()["total"] == len(expected)
        for n, task_id in enumerate(ids):
            single = await client.get(f"/api/v1/tasks/{task_id}", headers=auth(user))
            assert single.status_code == (200 if sees(user, tasks[n], members) else 404)
        for index, project_id in enumerate(project_ids):
            scoped = await client.get(
                "/api/v1/tasks/",
                params={"project_id": project_id, "limit": 100},
                headers=auth(user),
            )
            if user not in members[index]:
                assert scoped.status_code == 404
                continue
            in_project = {ids[n] for n, task in enumerate(tasks) if task[2] == index}
            assert {task["id"] for task in scoped.json()["tasks"]} == in_project
