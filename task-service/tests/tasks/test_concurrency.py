"""Races over real transactions: cycles, If-Match, idempotent creation."""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import func, select, text
from task_factories import auth, create_task, principal
from task_service.tasks.graph_service import DependencyService
from task_service.tasks.models import Task, TaskDependency
from task_service.tasks.service import TaskService
from taskflow_kit.testing import another_transaction, until_a_lock_is_awaited

pytestmark = pytest.mark.usefixtures("client")


async def count_tasks(app: FastAPI) -> int:
    async with app.state.sessionmaker() as session:
        return int((await session.execute(select(func.count()).select_from(Task))).scalar_one())


async def test_opposite_edges_at_once_never_both_succeed(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    for _ in range(8):
        a = await create_task(client, title="a")
        b = await create_task(client, title="b")
        forward, backward = await asyncio.gather(
            client.post(
                f"/api/v1/tasks/{a['id']}/dependencies",
                json={"depends_on_id": b["id"]},
                headers=auth(1),
            ),
            client.post(
                f"/api/v1/tasks/{b['id']}/dependencies",
                json={"depends_on_id": a["id"]},
                headers=auth(1),
            ),
        )
        assert sorted([forward.status_code, backward.status_code]) == [201, 409]
    async with app.state.sessionmaker() as session:
        rows = await session.execute(select(TaskDependency.task_id, TaskDependency.depends_on_id))
        edges = {(source, target) for source, target in rows}
    assert len(edges) == 8
    assert not any((target, source) in edges for source, target in edges)


async def test_three_way_cycle_race_leaves_no_cycle(client: httpx.AsyncClient) -> None:
    a, b, c = [await create_task(client, title=name) for name in "abc"]
    pairs = [(a, b), (b, c), (c, a)]
    responses = await asyncio.gather(
        *(
            client.post(
                f"/api/v1/tasks/{x['id']}/dependencies",
                json={"depends_on_id": y["id"]},
                headers=auth(1),
            )
            for x, y in pairs
        )
    )
    assert sorted(response.status_code for response in responses) == [201, 201, 409]


async def test_same_if_match_at_once_exactly_one_wins(client: httpx.AsyncClient) -> None:
    task = await create_task(client)
    url = f"/api/v1/tasks/{task['id']}"
    responses = await asyncio.gather(
        *(
            client.patch(
                url, json={"title": f"writer {n}"}, headers={**auth(1), "If-Match": 'W/"1"'}
            )
            for n in range(4)
        )
    )
    statuses = Counter(response.status_code for response in responses)
    assert statuses == {200: 1, 412: 3}
    winner = next(response for response in responses if response.status_code == 200)
    current = (await client.get(url, headers=auth(1))).json()
    assert current["title"] == winner.json()["title"]
    assert current["version"] == 2


async def test_idempotent_create_replays_the_same_response(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    headers = {**auth(1), "Idempotency-Key": "create-1"}
    body = {"title": "once", "tags": ["a"]}
    first = await client.post("/api/v1/tasks/", json=body, headers=headers)
    second = await client.post("/api/v1/tasks/", json=body, headers=headers)
    assert first.status_code == second.status_code == 201
    assert first.json() == second.json()
    assert first.headers["Location"] == second.headers["Location"]
    assert await count_tasks(app) == 1

    different = await client.post("/api/v1/tasks/", json={"title": "other"}, headers=headers)
    assert different.status_code == 422
    assert await count_tasks(app) == 1

    # keys are per user
    theirs = await client.post(
        "/api/v1/tasks/", json=body, headers={**auth(2), "Idempotency-Key": "create-1"}
    )
    assert theirs.status_code == 201
    assert theirs.json()["id"] != first.json()["id"]


async def test_idempotency_key_expires_after_24_hours(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    headers = {**auth(1), "Idempotency-Key": "old"}
    first = await client.post("/api/v1/tasks/", json={"title": "x"}, headers=headers)
    async with app.state.sessionmaker() as session, session.begin():
        await session.execute(
            text("UPDATE idempotency_record SET created_at = created_at - interval '25 hours'")
        )
    second = await client.post("/api/v1/tasks/", json={"title": "x"}, headers=headers)
    assert second.status_code == 201
    assert second.json()["id"] != first.json()["id"]


async def test_concurrent_duplicates_create_one_task(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    headers = {**auth(1), "Idempotency-Key": "burst"}
    responses = await asyncio.gather(
        *(client.post("/api/v1/tasks/", json={"title": "burst"}, headers=headers) for _ in range(5))
    )
    assert {response.status_code for response in responses} == {201}
    assert len({response.json()["id"] for response in responses}) == 1
    assert await count_tasks(app) == 1


async def test_failed_create_does_not_burn_the_key(client: httpx.AsyncClient, app: FastAPI) -> None:
    headers = {**auth(1), "Idempotency-Key": "retry-me"}
    failed = await client.post(
        "/api/v1/tasks/", json={"title": "x", "assignee_id": 4242}, headers=headers
    )
    assert failed.status_code == 422
    ok = await client.post("/api/v1/tasks/", json={"title": "x", "assignee_id": 3}, headers=headers)
    assert ok.status_code == 201


@pytest.mark.parametrize("deleted", ["task", "dependency"])
async def test_an_edge_whose_task_is_deleted_meanwhile_is_404(
    client: httpx.AsyncClient, app: FastAPI, deleted: str
) -> None:
    """The checks read both tasks, then a DELETE of one commits before the edge is written:
    404 naming the deleted task (it was a 500: the edge's foreign key refused it)."""
    task = await create_task(client, title="task")
    dependency = await create_task(client, title="dependency")
    gone = task if deleted == "task" else dependency

    async with another_transaction(app.state.pool) as connection:
        await connection.execute("DELETE FROM task WHERE id = $1", gone["id"])
        adding = asyncio.create_task(
            client.post(
                f"/api/v1/tasks/{task['id']}/dependencies",
                json={"depends_on_id": dependency["id"]},
                headers=auth(1),
            )
        )
        await until_a_lock_is_awaited(app.state.pool)  # the edge's FK check waits for it
    response = await asyncio.wait_for(adding, 10)

    assert response.status_code == 404, response.text
    assert response.json()["detail"] == f"Task {gone['id']} not found"


async def test_a_dependency_tree_leaves_out_a_task_deleted_while_it_is_read(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    """The tree's edges and its tasks are two reads: a task deleted between them is left
    out of the tree (it was a 500, KeyError)."""
    root = await create_task(client, title="root")
    kept = await create_task(client, title="kept")
    doomed = await create_task(client, title="doomed")
    for dependency in (kept, doomed):
        added = await client.post(
            f"/api/v1/tasks/{root['id']}/dependencies",
            json={"depends_on_id": dependency["id"]},
            headers=auth(1),
        )
        assert added.status_code == 201, added.text

    async with app.state.pool.acquire() as reading, app.state.pool.acquire() as deleting:
        tasks = TaskService(reading, user_client=app.state.user_client, outbox=app.state.outbox)
        service = DependencyService(tasks)
        read_edges = service.graph.tree_edges

        async def edges_then_a_deletion(task_id: int, depth: int) -> list[tuple[int, int]]:
            edges = await read_edges(task_id, depth)
            await deleting.execute("DELETE FROM task WHERE id = $1", doomed["id"])
            return edges

        service.graph.tree_edges = edges_then_a_deletion  # type: ignore[method-assign]
        tree = await service.dependency_tree(principal(1), root["id"], depth=3)

    assert [node.id for node in tree.dependencies] == [kept["id"]]


async def dependent_pair(client: httpx.AsyncClient) -> tuple[dict[str, Any], dict[str, Any]]:
    """Two new tasks, the second depending on the first: (dependency, dependent as the edge
    left it)."""
    dependency = await create_task(client, title="dependency")
    dependent = await create_task(client, title="dependent")
    added = await client.post(
        f"/api/v1/tasks/{dependent['id']}/dependencies",
        json={"depends_on_id": dependency["id"]},
        headers=auth(1),
    )
    assert added.status_code == 201, added.text
    return dependency, added.json()


async def test_a_deletion_locks_the_tasks_depending_on_it_before_itself(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    """A completion locks its task, then share-locks what it depends on. A deletion of one of
    those dependencies locked itself, then its dependents: the two waited for each other until
    PostgreSQL aborted one (a second later). It now takes its dependents first, so the
    completion's share lock on it is granted while the deletion waits."""
    dependency, dependent = await dependent_pair(client)

    async with another_transaction(app.state.pool) as completing:
        await completing.execute("SELECT 1 FROM task WHERE id = $1 FOR UPDATE", dependent["id"])
        deleting = asyncio.create_task(
            client.delete(f"/api/v1/tasks/{dependency['id']}", headers=auth(1))
        )
        await until_a_lock_is_awaited(app.state.pool)  # the deletion waits for the dependent
        # Far below deadlock_timeout (1 s): a deletion holding its own row would make this wait
        # time out, where a deadlock would only be found after a second.
        await completing.execute("SET LOCAL lock_timeout = '300ms'")
        await completing.execute("SELECT 1 FROM task WHERE id = $1 FOR SHARE", dependency["id"])
    response = await asyncio.wait_for(deleting, 10)

    assert response.status_code == 204, response.text
    after = await client.get(f"/api/v1/tasks/{dependent['id']}", headers=auth(1))
    assert after.json()["depends_on"] == []
    assert after.json()["version"] == dependent["version"] + 1


async def test_an_edge_removal_locks_its_task_before_the_edge(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    """A deletion of a dependency locks the tasks depending on it, then deletes their edges to
    it. An edge removal deleted its edge, then locked its task for the new version: the two
    waited for each other. It now locks its task first, so the deletion's removal of the edge
    goes through while the edge removal waits (and then finds the edge gone: 404)."""
    dependency, dependent = await dependent_pair(client)

    async with another_transaction(app.state.pool) as deleting:
        await deleting.execute(
            "SELECT 1 FROM task WHERE id = $1 FOR NO KEY UPDATE", dependent["id"]
        )
        removing = asyncio.create_task(
            client.delete(
                f"/api/v1/tasks/{dependent['id']}/dependencies/{dependency['id']}",
                headers=auth(1),
            )
        )
        await until_a_lock_is_awaited(app.state.pool)  # the removal waits for the task
        await deleting.execute("SET LOCAL lock_timeout = '300ms'")  # far below 1 s, as above
        await deleting.execute(
            "DELETE FROM task_dependency WHERE task_id = $1 AND depends_on_id = $2",
            dependent["id"],
            dependency["id"],
        )
    response = await asyncio.wait_for(removing, 10)

    assert response.status_code == 404, response.text


async def test_an_edge_writer_holds_no_task_row_while_it_waits_for_the_graph(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    """An edge writer key-share locked its dependency, then waited for the graph's locks held
    by another edge writer: anything that needed the dependency's row (a deletion) waited for
    it, in rings PostgreSQL broke a second later. It now reads the dependency without a lock,
    so the deletion's lock is granted while the writer waits."""
    task = await create_task(client, title="task")
    dependency = await create_task(client, title="dependency")
    other = await create_task(client, title="other")

    async with (
        another_transaction(app.state.pool) as holding,
        app.state.pool.acquire() as deleting,
    ):
        service = DependencyService(
            TaskService(holding, user_client=app.state.user_client, outbox=app.state.outbox)
        )
        # Another edge from the same task, uncommitted: it holds the task's node lock.
        await service.add_dependency(principal(1), task["id"], other["id"])
        adding = asyncio.create_task(
            client.post(
                f"/api/v1/tasks/{task['id']}/dependencies",
                json={"depends_on_id": dependency["id"]},
                headers=auth(1),
            )
        )
        await until_a_lock_is_awaited(app.state.pool)  # the request waits for the node lock
        async with deleting.transaction():
            await deleting.execute("SET LOCAL lock_timeout = '300ms'")  # far below 1 s
            await deleting.execute("SELECT 1 FROM task WHERE id = $1 FOR UPDATE", dependency["id"])
    response = await asyncio.wait_for(adding, 10)

    assert response.status_code == 201, response.text
    assert response.json()["depends_on"] == sorted([other["id"], dependency["id"]])
