"""Dependencies over HTTP: edges, cycles (named), blocked completion, tree, deletion."""

from __future__ import annotations

import itertools

import httpx
import pytest
from task_factories import auth, create_task

pytestmark = pytest.mark.usefixtures("client")


async def depend(
    client: httpx.AsyncClient, task_id: int, depends_on_id: int, *, user: int = 1
) -> httpx.Response:
    return await client.post(
        f"/api/v1/tasks/{task_id}/dependencies",
        json={"depends_on_id": depends_on_id},
        headers=auth(user),
    )


async def test_add_list_and_remove_dependency(client: httpx.AsyncClient) -> None:
    a = await create_task(client, title="a")
    b = await create_task(client, title="b")
    response = await depend(client, a["id"], b["id"])
    assert response.status_code == 201
    body = response.json()
    assert body["depends_on"] == [b["id"]]
    assert body["blocked"] is True
    assert body["version"] == 2
    assert response.headers["ETag"] == 'W/"2"'

    again = await depend(client, a["id"], b["id"])
    assert again.status_code == 201
    assert again.json()["version"] == 2  # the edge existed: nothing changed

    listing = (await client.get(f"/api/v1/tasks/{a['id']}/dependencies", headers=auth(1))).json()
    assert [t["id"] for t in listing["depends_on"]] == [b["id"]]
    assert listing["dependents"] == []
    reverse = (await client.get(f"/api/v1/tasks/{b['id']}/dependencies", headers=auth(1))).json()
    assert [t["id"] for t in reverse["dependents"]] == [a["id"]]

    url = f"/api/v1/tasks/{a['id']}/dependencies/{b['id']}"
    assert (await client.delete(url, headers=auth(1))).status_code == 204
    assert (await client.delete(url, headers=auth(1))).status_code == 404
    task = (await client.get(f"/api/v1/tasks/{a['id']}", headers=auth(1))).json()
    assert (task["depends_on"], task["blocked"], task["version"]) == ([], False, 3)


async def test_self_dependency_is_422(client: httpx.AsyncClient) -> None:
    a = await create_task(client)
    response = await depend(client, a["id"], a["id"])
    assert response.status_code == 422


async def test_unknown_dependency_target_is_404(client: httpx.AsyncClient) -> None:
    a = await create_task(client)
    assert (await depend(client, a["id"], 987654)).status_code == 404
    await create_task(client, depends_on=[987654], expect=404)


async def test_cycle_is_refused_with_its_path(client: httpx.AsyncClient) -> None:
    a, b, c = [await create_task(client, title=name) for name in "abc"]
    assert (await depend(client, a["id"], b["id"])).status_code == 201
    assert (await depend(client, b["id"], c["id"])).status_code == 201
    response = await depend(client, c["id"], a["id"])
    assert response.status_code == 409
    problem = response.json()
    assert problem["cycle"] == [c["id"], a["id"], b["id"], c["id"]]
    assert f"{c['id']} -> {a['id']} -> {b['id']} -> {c['id']}" in problem["detail"]
    assert (await depend(client, b["id"], a["id"])).status_code == 409


async def test_completion_is_blocked_by_open_dependencies(client: httpx.AsyncClient) -> None:
    blocker1 = await create_task(client, title="first")
    blocker2 = await create_task(client, title="second", status="done")
    blocker3 = await create_task(client, title="third")
    task = await create_task(client, depends_on=[blocker3["id"], blocker1["id"], blocker2["id"]])
    assert task["blocked"] is True
    assert task["depends_on"] == sorted([blocker1["id"], blocker2["id"], blocker3["id"]])
    url = f"/api/v1/tasks/{task['id']}"
    for attempt in (
        client.patch(f"{url}/complete", headers=auth(1)),
        client.post(f"{url}/toggle", headers=auth(1)),
        client.patch(url, json={"status": "done"}, headers=auth(1)),
        client.put(url, json={"is_completed": True}, headers=auth(1)),
    ):
        response = await attempt
        assert response.status_code == 409
        assert response.json()["blocking_ids"] == sorted([blocker1["id"], blocker3["id"]])
    await create_task(client, depends_on=[blocker1["id"]], status="done", expect=409)

    for blocker in (blocker1, blocker3):
        await client.patch(f"/api/v1/tasks/{blocker['id']}/complete", headers=auth(1))
    unblocked = (await client.get(url, headers=auth(1))).json()
    assert unblocked["blocked"] is False
    assert (await client.patch(f"{url}/complete", headers=auth(1))).status_code == 200


async def test_delete_removes_edges_both_ways(client: httpx.AsyncClient) -> None:
    a, b, c = [await create_task(client, title=name) for name in "abc"]
    await depend(client, a["id"], b["id"])
    await depend(client, b["id"], c["id"])
    assert (await client.delete(f"/api/v1/tasks/{b['id']}", headers=auth(1))).status_code == 204
    task_a = (await client.get(f"/api/v1/tasks/{a['id']}", headers=auth(1))).json()
    assert (task_a["depends_on"], task_a["blocked"]) == ([], False)
    assert task_a["version"] == 3  # its dependencies changed
    deps = (await client.get(f"/api/v1/tasks/{c['id']}/dependencies", headers=auth(1))).json()
    assert deps["dependents"] == []
    # and the graph allows what the deleted task used to forbid
    assert (await depend(client, c["id"], a["id"])).status_code == 201


async def test_dependency_tree_is_nested_and_depth_limited(client: httpx.AsyncClient) -> None:
    tasks = [await create_task(client, title=f"t{i}") for i in range(5)]
    ids = [task["id"] for task in tasks]
    for parent, child in itertools.pairwise(ids):
        assert (await depend(client, parent, child)).status_code == 201
    await depend(client, ids[0], ids[2])  # a diamond-ish shortcut

    response = await client.get(
        f"/api/v1/tasks/{ids[0]}/dependency-tree", params={"depth": 2}, headers=auth(1)
    )
    assert response.status_code == 200
    root = response.json()
    assert root["id"] == ids[0]
    assert [child["id"] for child in root["dependencies"]] == [ids[1], ids[2]]
    first = root["dependencies"][0]
    assert [child["id"] for child in first["dependencies"]] == [ids[2]]
    deepest = first["dependencies"][0]
    assert deepest["dependencies"] == []
    assert deepest["truncated"] is True
    assert root["truncated"] is False

    full = (
        await client.get(f"/api/v1/tasks/{ids[0]}/dependency-tree", headers=auth(1))
    ).json()  # default depth 3
    assert full["dependencies"][1]["dependencies"][0]["dependencies"][0]["id"] == ids[4]
    for bad in (0, 11):
        response = await client.get(
            f"/api/v1/tasks/{ids[0]}/dependency-tree", params={"depth": bad}, headers=auth(1)
        )
        assert response.status_code == 422


async def test_tree_hides_tasks_the_caller_cannot_see(client: httpx.AsyncClient) -> None:
    secret = await create_task(client, owner=1, title="secret plan")
    shared = await create_task(client, owner=1, title="shared", assignee_id=2)
    await depend(client, shared["id"], secret["id"])
    tree = (
        await client.get(f"/api/v1/tasks/{shared['id']}/dependency-tree", headers=auth(2))
    ).json()
    hidden = tree["dependencies"][0]
    assert hidden["id"] == secret["id"]
    assert (hidden["visible"], hidden["title"]) == (False, None)
    assert "secret plan" not in str(tree)
    deps = (await client.get(f"/api/v1/tasks/{shared['id']}/dependencies", headers=auth(2))).json()
    assert deps["depends_on"] == []
    # the assignee still cannot finish it while the hidden dependency is open
    response = await client.patch(f"/api/v1/tasks/{shared['id']}/complete", headers=auth(2))
    assert response.status_code == 409
