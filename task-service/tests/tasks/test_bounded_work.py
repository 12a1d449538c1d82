"""Bounded work (issue 9, item 12): dependency lists are paged, edge writes lock only the part
of the graph they could close a cycle through, idempotency records are swept by anyone."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import func, insert, select
from task_factories import auth, create_task, principal
from task_service.tasks.graph_service import DependencyService
from task_service.tasks.models import IdempotencyRecord
from task_service.tasks.service import TaskService

pytestmark = pytest.mark.usefixtures("client")


@asynccontextmanager
async def edge_held_open(
    app: FastAPI, user_id: int, task_id: int, depends_on_id: int
) -> AsyncIterator[None]:
    """Add an edge in a transaction that stays open (holding its locks) inside the block, and
    commits when the block ends."""
    async with app.state.pool.acquire() as connection, connection.transaction():
        tasks = TaskService(connection, user_client=app.state.user_client, outbox=app.state.outbox)
        await DependencyService(tasks).add_dependency(principal(user_id), task_id, depends_on_id)
        yield


def add_edge(client: httpx.AsyncClient, user_id: int, task_id: int, depends_on_id: int):
    return client.post(
        f"/api/v1/tasks/{task_id}/dependencies",
        json={"depends_on_id": depends_on_id},
        headers=auth(user_id),
    )


async def test_unrelated_edge_writes_do_not_wait_for_each_other(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    a1, a2 = [await create_task(client, owner=1, title=f"a{n}") for n in range(2)]
    b1, b2 = [await create_task(client, owner=2, title=f"b{n}") for n in range(2)]
    async with edge_held_open(app, 1, a1["id"], a2["id"]):
        # Another user's edge in another graph completes while the first write is open.
        response = await asyncio.wait_for(add_edge(client, 2, b1["id"], b2["id"]), timeout=10)
        assert response.status_code == 201


@pytest.mark.parametrize("shape", ["two-node", "four-node"])
async def test_cycle_closing_edge_waits_for_the_open_write_then_sees_it(
    client: httpx.AsyncClient, app: FastAPI, shape: str
) -> None:
    a, b, c, d = [await create_task(client, title=name) for name in "abcd"]
    if shape == "two-node":
        closing = (b, a)
    else:
        # a→b (held open) + existing b→c and d→a: c→d would close a→b→c→d→a.
        assert (await add_edge(client, 1, b["id"], c["id"])).status_code == 201
        assert (await add_edge(client, 1, d["id"], a["id"])).status_code == 201
        closing = (c, d)
    async with edge_held_open(app, 1, a["id"], b["id"]):
        pending = asyncio.ensure_future(add_edge(client, 1, closing[0]["id"], closing[1]["id"]))
        done, _ = await asyncio.wait({pending}, timeout=0.5)
        assert not done  # it waits on the open write's locks instead of missing its edge
    response = await asyncio.wait_for(pending, timeout=10)
    assert response.status_code == 409
    assert response.json()["cycle"][0] == closing[0]["id"]


async def test_dependency_lists_are_bounded_with_totals(client: httpx.AsyncClient) -> None:
    blockers = [await create_task(client, title=f"dep{n}") for n in range(5)]
    task = await create_task(client, title="waits", depends_on=[t["id"] for t in blockers])
    for blocker in blockers[:3]:
        await create_task(client, title="after", depends_on=[blocker["id"]])

    page = await client.get(
        f"/api/v1/tasks/{task['id']}/dependencies", params={"limit": 2}, headers=auth(1)
    )
    assert page.status_code == 200
    body = page.json()
    assert [t["id"] for t in body["depends_on"]] == sorted(t["id"] for t in blockers)[:2]
    assert (body["depends_on_total"], body["dependents_total"], body["limit"]) == (5, 0, 2)

    reverse = (
        await client.get(f"/api/v1/tasks/{blockers[0]['id']}/dependencies", headers=auth(1))
    ).json()
    assert (reverse["depends_on_total"], reverse["dependents_total"], reverse["limit"]) == (
        0,
        2,
        50,
    )
    too_many = await client.get(
        f"/api/v1/tasks/{task['id']}/dependencies", params={"limit": 201}, headers=auth(1)
    )
    assert too_many.status_code == 422


async def test_any_keyed_post_sweeps_other_owners_expired_records(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    old = datetime.now(UTC) - timedelta(days=2)
    async with app.state.sessionmaker() as session:
        await session.execute(
            insert(IdempotencyRecord),
            [
                {"owner_id": 7, "key": f"old-{n}", "request_hash": "x" * 64, "created_at": old}
                for n in range(30)
            ],
        )
        await session.commit()

    response = await client.post(
        "/api/v1/tasks/", json={"title": "keyed"}, headers={**auth(1), "Idempotency-Key": "k-1"}
    )
    assert response.status_code == 201
    async with app.state.sessionmaker() as session:
        left = await session.execute(
            select(func.count())
            .select_from(IdempotencyRecord)
            .where(IdempotencyRecord.owner_id == 7)
        )
        assert left.scalar_one() == 0
