"""Assignment when user-service misbehaves (faked with respx): never a blind assignment."""

from __future__ import annotations

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import func, select
from task_factories import FakeUserService, auth, create_task
from task_service.tasks.models import Task

pytestmark = pytest.mark.usefixtures("client")


async def task_count(app: FastAPI) -> int:
    async with app.state.sessionmaker() as session:
        return int((await session.execute(select(func.count()).select_from(Task))).scalar_one())


@pytest.mark.parametrize(
    "failure",
    [
        httpx.ConnectError("refused"),
        httpx.ReadTimeout("slow"),
        500,
        503,
        401,
    ],
    ids=["connect", "timeout", "500", "503", "401"],
)
async def test_unusable_user_service_means_503_and_no_task(
    client: httpx.AsyncClient, app: FastAPI, user_service: FakeUserService, failure: object
) -> None:
    # connect errors are retried (twice), so fail every attempt
    user_service.failures = [failure] * 3  # type: ignore[list-item]
    response = await client.post(
        "/api/v1/tasks/", json={"title": "x", "assignee_id": 3}, headers=auth(1)
    )
    assert response.status_code == 503
    assert int(response.headers["Retry-After"]) >= 1
    assert response.headers["content-type"].startswith("application/problem+json")
    assert await task_count(app) == 0


async def test_update_with_unreachable_user_service_keeps_old_assignee(
    client: httpx.AsyncClient, user_service: FakeUserService
) -> None:
    task = await create_task(client, assignee_id=3)
    user_service.failures = [httpx.ConnectError("refused")] * 3
    url = f"/api/v1/tasks/{task['id']}"
    response = await client.patch(url, json={"assignee_id": 4}, headers=auth(1))
    assert response.status_code == 503
    current = (await client.get(url, headers=auth(1))).json()
    assert (current["assignee_id"], current["version"]) == (3, 1)


async def test_a_connect_error_is_retried(
    client: httpx.AsyncClient, user_service: FakeUserService
) -> None:
    user_service.failures = [httpx.ConnectError("refused")]
    task = await create_task(client, assignee_id=3)
    assert task["assignee_id"] == 3
    assert user_service.calls == [3, 3]


async def test_breaker_opens_and_stops_calling(
    client: httpx.AsyncClient, user_service: FakeUserService
) -> None:
    user_service.failures = [500] * 5
    for user_id in range(1, 6):
        await create_task(client, assignee_id=user_id, expect=503)
    calls = len(user_service.calls)
    response = await client.post(
        "/api/v1/tasks/", json={"title": "x", "assignee_id": 6}, headers=auth(1)
    )
    assert response.status_code == 503
    assert "circuit open" in response.json()["detail"]
    assert len(user_service.calls) == calls  # answered without calling user-service
    # unassigned tasks do not need user-service at all
    await create_task(client)


async def test_unassigning_needs_no_user_service(
    client: httpx.AsyncClient, user_service: FakeUserService
) -> None:
    task = await create_task(client, assignee_id=3)
    user_service.failures = [httpx.ConnectError("refused")] * 3
    response = await client.patch(
        f"/api/v1/tasks/{task['id']}", json={"assignee_id": None}, headers=auth(1)
    )
    assert response.status_code == 200
