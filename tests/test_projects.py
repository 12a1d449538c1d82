"""Projects end to end through the gateway: a board two people share, what each sees, live
events for every member, and access that ends at once (on every task-service replica) when a
member is removed or their account is deleted."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import pytest
from websockets.sync.client import ClientConnection, connect

from tests.harness import (
    ALL_SERVICES,
    ServiceProcess,
    Suite,
    User,
    is_problem,
    register_and_login,
    require_services,
    unique,
    wait_until,
)

require_services(*ALL_SERVICES)
pytestmark = pytest.mark.suite

API = "/api/v1"
ACCESS_BOUND = 1.0  # seconds: removal ends access within this, on every replica


@contextmanager
def live(gateway: ServiceProcess, user: User) -> Iterator[ClientConnection]:
    url = gateway.url.replace("http://", "ws://") + f"{API}/ws"
    with connect(url, open_timeout=5, close_timeout=2) as socket:
        socket.send(json.dumps({"token": user.token}))
        assert json.loads(socket.recv(timeout=5))["type"] == "ready"
        yield socket


def events_until(
    socket: ClientConnection, wanted: set[str], *, timeout: float = 3.0
) -> list[dict[str, Any]]:
    """Messages (heartbeats left out) until one of each type in `wanted` has arrived."""
    seen: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout
    while not wanted <= {message["type"] for message in seen}:
        message = json.loads(socket.recv(timeout=max(0.01, deadline - time.monotonic())))
        if message.get("type") != "heartbeat":
            seen.append(message)
    return seen


def no_project_event(socket: ClientConnection, project_id: int, *, within: float = 0.8) -> None:
    deadline = time.monotonic() + within
    while (left := deadline - time.monotonic()) > 0:
        try:
            message = json.loads(socket.recv(timeout=left))
        except TimeoutError:
            return
        data = message.get("data") or {}
        assert data.get("project_id") != project_id, f"unexpected: {message}"


def make_project(client: httpx.Client, owner: User, *members: User) -> dict[str, Any]:
    response = client.post(
        f"{API}/projects/", json={"name": unique("board ")}, headers=owner.headers
    )
    assert response.status_code == 201, response.text
    project: dict[str, Any] = response.json()
    for member in members:
        added = client.post(
            f"{API}/projects/{project['id']}/members",
            json={"user_id": member.id},
            headers=owner.headers,
        )
        assert added.status_code == 201, added.text
    return project


def test_a_shared_board_through_the_gateway(client: httpx.Client) -> None:
    ana, ben, cleo = (register_and_login(client, name) for name in ("ana", "ben", "cleo"))
    project = make_project(client, ana, ben)
    assert (project["role"], project["owner_id"]) == ("owner", ana.id)
    mine = client.get(f"{API}/projects/", headers=ben.headers).json()["projects"]
    assert [(p["id"], p["role"], p["member_count"]) for p in mine] == [(project["id"], "member", 2)]
    members = client.get(f"{API}/projects/{project['id']}/members", headers=ben.headers).json()
    assert [(m["user_id"], m["role"]) for m in members["members"]] == [
        (ana.id, "owner"),
        (ben.id, "member"),
    ]
    assert members["members"][1]["username"] in (ben.username, None)  # directory may lag
    task = client.post(
        f"{API}/tasks/",
        json={"title": "Plan", "project_id": project["id"], "assignee_id": ben.id},
        headers=ana.headers,
    )
    assert task.status_code == 201, task.text
    task_id = task.json()["id"]
    done = client.patch(f"{API}/tasks/{task_id}/complete", headers=ben.headers)
    assert done.status_code == 200
    listed = client.get(f"{API}/tasks/", params={"project_id": project["id"]}, headers=ben.headers)
    assert [t["id"] for t in listed.json()["tasks"]] == [task_id]
    stats = client.get(f"{API}/stats/", params={"project_id": project["id"]}, headers=ben.headers)
    assert stats.status_code == 200, stats.text
    assert (stats.json()["total_tasks"], stats.json()["completed_tasks"]) == (1, 1)
    # Not a member: the project, its tasks and its figures do not exist.
    for path, params in (
        (f"{API}/projects/{project['id']}", None),
        (f"{API}/tasks/{task_id}", None),
        (f"{API}/tasks/", {"project_id": project["id"]}),
        (f"{API}/stats/", {"project_id": project["id"]}),
    ):
        is_problem(client.get(path, params=params, headers=cleo.headers), 404)
    assert client.get(f"{API}/tasks/", headers=cleo.headers).json()["tasks"] == []
    is_problem(
        client.post(
            f"{API}/tasks/",
            json={"title": "x", "project_id": project["id"], "assignee_id": cleo.id},
            headers=ana.headers,
        ),
        422,
    )
    is_problem(client.delete(f"{API}/projects/{project['id']}", headers=ben.headers), 403)
    assert client.delete(f"{API}/projects/{project['id']}", headers=ana.headers).status_code == 204
    is_problem(client.get(f"{API}/tasks/{task_id}", headers=ana.headers), 404)


def test_members_get_live_events_and_a_removed_member_loses_everything_at_once(
    client: httpx.Client, suite: Suite, gateway: ServiceProcess
) -> None:
    ana, ben = (register_and_login(client, name) for name in ("ana", "ben"))
    project = make_project(client, ana)
    with live(gateway, ana) as ana_socket, live(gateway, ben) as ben_socket:
        added = client.post(
            f"{API}/projects/{project['id']}/members",
            json={"user_id": ben.id},
            headers=ana.headers,
        )
        assert added.status_code == 201
        for socket in (ana_socket, ben_socket):
            assert "project.member_added" in {
                m["type"] for m in events_until(socket, {"project.member_added"})
            }
        task = client.post(
            f"{API}/tasks/",
            json={"title": "Shared", "project_id": project["id"], "assignee_id": ben.id},
            headers=ana.headers,
        ).json()
        # A task ben has no part in: he sees it because he is a member.
        other = client.post(
            f"{API}/tasks/",
            json={"title": "Ana's", "project_id": project["id"]},
            headers=ana.headers,
        ).json()
        created: set[str] = set()
        deadline = time.monotonic() + 3
        while str(other["id"]) not in created and time.monotonic() < deadline:
            for message in events_until(ben_socket, {"task.created"}):
                if message["type"] == "task.created":
                    created.add(message["subject_id"])
        assert {str(task["id"]), str(other["id"])} <= created

        started = time.monotonic()
        removed = client.delete(
            f"{API}/projects/{project['id']}/members/{ben.id}", headers=ana.headers
        )
        assert removed.status_code == 204
        # Every task-service replica refuses him at once (the check is in each read's SQL).
        for url in suite.task_urls:
            direct = httpx.get(f"{url}{API}/tasks/{other['id']}", headers=ben.headers)
            assert direct.status_code == 404, (url, direct.text)
        told = events_until(ben_socket, {"project.access_lost"}, timeout=ACCESS_BOUND + 1)
        elapsed = time.monotonic() - started
        assert elapsed < ACCESS_BOUND + 0.5, f"told after {elapsed:.2f}s"
        types = [m["type"] for m in told]
        assert "project.member_removed" in types
        lost = next(m for m in told if m["type"] == "project.access_lost")
        assert (lost["project_id"], lost["reason"]) == (project["id"], "removed")
        unassigned = client.get(f"{API}/tasks/{task['id']}", headers=ana.headers).json()
        assert unassigned["assignee_id"] is None
        # Later changes to the board reach ana, not ben.
        client.patch(f"{API}/tasks/{other['id']}", json={"title": "renamed"}, headers=ana.headers)
        assert "task.updated" in {m["type"] for m in events_until(ana_socket, {"task.updated"})}
        no_project_event(ben_socket, project["id"])
    is_problem(client.get(f"{API}/projects/{project['id']}", headers=ben.headers), 404)


def test_a_deleted_account_leaves_its_projects_and_hands_over_ownership(
    client: httpx.Client,
) -> None:
    owner, admin = (register_and_login(client, name) for name in ("owner", "heir"))
    project = make_project(client, owner)
    added = client.post(
        f"{API}/projects/{project['id']}/members",
        json={"user_id": admin.id, "role": "admin"},
        headers=owner.headers,
    )
    assert added.status_code == 201
    deleted = client.request(
        "DELETE",
        f"{API}/users/me",
        json={"current_password": owner.password},
        headers=owner.headers,
    )
    assert deleted.status_code == 204

    def handed_over() -> bool:
        response = client.get(f"{API}/projects/{project['id']}", headers=admin.headers)
        return response.status_code == 200 and response.json()["owner_id"] == admin.id

    wait_until(handed_over, timeout=5, interval=0.1, what="the project to pass to its admin")
    view = client.get(f"{API}/projects/{project['id']}", headers=admin.headers).json()
    assert (view["role"], view["member_count"]) == ("owner", 1)


def test_the_merged_openapi_documents_the_projects_routes(client: httpx.Client) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    for path in (
        f"{API}/projects/",
        f"{API}/projects/{{project_id}}",
        f"{API}/projects/{{project_id}}/members",
        f"{API}/projects/{{project_id}}/members/{{user_id}}",
    ):
        assert path in paths, path
    removal = paths[f"{API}/projects/{{project_id}}/members/{{user_id}}"]["delete"]
    assert {"204", "403", "404"} <= set(removal["responses"])
