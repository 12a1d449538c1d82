"""Keyword-only helpers that build tokens, tasks and a fake user-service for the tests."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from fastapi import FastAPI
from task_service.config import Settings
from task_service.tasks.models import Task
from taskflow_kit.auth import Principal
from taskflow_kit.tokens import TokenConfig, issue_token

TOKEN_CONFIG: TokenConfig = Settings(
    environment="test", database_url="postgresql://unused/x"
).token_config()


def auth(user_id: int, *, is_superuser: bool = False) -> dict[str, str]:
    token = issue_token(
        TOKEN_CONFIG,
        subject=str(user_id),
        token_type="access",
        ttl=timedelta(minutes=5),
        claims={"username": f"user{user_id}", "is_superuser": is_superuser},
    )
    return {"Authorization": f"Bearer {token}"}


def principal(user_id: int) -> Principal:
    """The caller `auth(user_id)` authenticates, for tests below HTTP."""
    token = auth(user_id)["Authorization"].removeprefix("Bearer ")
    return Principal(id=user_id, username=f"user{user_id}", is_superuser=False, token=token)


@dataclass
class FakeUserService:
    """Answers `GET /api/v1/users/{id}` like user-service; counts the calls it gets."""

    active: set[int]
    inactive: set[int] = field(default_factory=set)
    calls: list[int] = field(default_factory=list)
    authorizations: list[str | None] = field(default_factory=list)
    # Failures to produce before answering normally: an exception to raise or a status code.
    failures: list[Exception | int] = field(default_factory=list)

    def handle(self, request: httpx.Request, user_id: str) -> httpx.Response:
        uid = int(user_id)
        self.calls.append(uid)
        self.authorizations.append(request.headers.get("Authorization"))
        if self.failures:
            failure = self.failures.pop(0)
            if isinstance(failure, Exception):
                raise failure
            return httpx.Response(failure, json={"title": "failure"})
        if uid in self.active or uid in self.inactive:
            return httpx.Response(
                200,
                json={
                    "id": uid,
                    "username": f"user{uid}",
                    "full_name": None,
                    "is_active": uid in self.active,
                },
            )
        return httpx.Response(404, json={"title": "Not Found", "status": 404})


async def create_task(
    client: httpx.AsyncClient, *, owner: int = 1, expect: int = 201, **fields: Any
) -> dict[str, Any]:
    body: dict[str, Any] = {"title": "A task", **fields}
    response = await client.post("/api/v1/tasks/", json=body, headers=auth(owner))
    assert response.status_code == expect, response.text
    result: dict[str, Any] = response.json()
    return result


async def create_project(
    client: httpx.AsyncClient, *, owner: int = 1, name: str = "Launch", members: Any = ()
) -> dict[str, Any]:
    """A project owned by `owner`; `members` are added with role `member` (ids) or as given
    ((id, role) pairs)."""
    response = await client.post("/api/v1/projects/", json={"name": name}, headers=auth(owner))
    assert response.status_code == 201, response.text
    project: dict[str, Any] = response.json()
    for member in members:
        user_id, role = member if isinstance(member, tuple) else (member, "member")
        added = await client.post(
            f"/api/v1/projects/{project['id']}/members",
            json={"user_id": user_id, "role": role},
            headers=auth(owner),
        )
        assert added.status_code == 201, added.text
    return project


async def pages_by_cursor(
    client: httpx.AsyncClient, params: dict[str, Any], *, limit: int = 2, user: int = 1
) -> list[dict[str, Any]]:
    """Every page of `GET /api/v1/tasks/` with `params`, `limit` tasks each, following
    `next_cursor` to the end: the answers' bodies, in order."""
    bodies: list[dict[str, Any]] = []
    cursor = None
    while True:
        page_params = {**params, "limit": limit, **({"cursor": cursor} if cursor else {})}
        response = await client.get("/api/v1/tasks/", params=page_params, headers=auth(user))
        assert response.status_code == 200, response.text
        bodies.append(response.json())
        cursor = bodies[-1]["next_cursor"]
        if cursor is None:
            return bodies


def plain_task(title: str, owner_id: int = 1, **fields: Any) -> dict[str, Any]:
    """A todo task's columns for `insert_tasks` (`fields` add or replace columns)."""
    now = datetime.now(UTC)
    return {
        "title": title,
        "status": "todo",
        "priority": "medium",
        "tags": [],
        "owner_id": owner_id,
        "created_at": now,
        "updated_at": now,
        "version": 1,
        **fields,
    }


async def insert_tasks(app: FastAPI, rows: list[dict[str, Any]]) -> list[int]:
    """Rows written straight to the table (no API, no events), in one transaction; their ids."""
    async with app.state.sessionmaker() as session, session.begin():
        tasks = [Task(**row) for row in rows]
        session.add_all(tasks)
        await session.flush()
        return [task.id for task in tasks]
