"""The event-driven half, end to end through real processes: live WebSocket updates, access
that ends at once, a deleted user's tasks, and statistics that follow every change.

Everything a client does goes through the gateway; revocation is also checked against each
service directly (every service validates tokens itself).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import pytest
from websockets.exceptions import ConnectionClosed
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
REVOCATION_BOUND = 1.0  # seconds: documented in docs/events.md


def ws_url(gateway: ServiceProcess) -> str:
    return gateway.url.replace("http://", "ws://") + f"{API}/ws"


@contextmanager
def live(
    gateway: ServiceProcess, user: User, *, first_message: bool = False
) -> Iterator[ClientConnection]:
    url = ws_url(gateway) if first_message else f"{ws_url(gateway)}?token={user.token}"
    with connect(url, open_timeout=5, close_timeout=2) as socket:
        if first_message:
            socket.send(json.dumps({"token": user.token}))
        ready = json.loads(socket.recv(timeout=5))
        assert ready == {"type": "ready", "user_id": user.id}
        yield socket


def next_event(socket: ClientConnection, *, timeout: float = 3.0) -> dict[str, Any]:
    """The next message that is not a heartbeat."""
    deadline = time.monotonic() + timeout
    while True:
        message: dict[str, Any] = json.loads(socket.recv(timeout=deadline - time.monotonic()))
        if message.get("type") != "heartbeat":
            return message


def no_event(socket: ClientConnection, *, within: float = 0.7) -> None:
    try:
        message = json.loads(socket.recv(timeout=within))
    except TimeoutError:
        return
    assert message.get("type") == "heartbeat", f"unexpected message: {message}"


def create_task(client: httpx.Client, user: User, **body: Any) -> dict[str, Any]:
    body.setdefault("title", unique("task "))
    response = client.post(f"{API}/tasks/", json=body, headers=user.headers)
    assert response.status_code == 201, response.text
    task: dict[str, Any] = response.json()
    return task


def test_a_socket_sees_a_created_task_within_a_second(
    client: httpx.Client, gateway: ServiceProcess, user: User
) -> None:
    with live(gateway, user) as socket:
        started = time.monotonic()
        task = create_task(client, user, title="Ship it")
        event = next_event(socket, timeout=2.0)
        latency = time.monotonic() - started
    assert event["type"] == "task.created"
    assert event["subject_id"] == str(task["id"])
    assert event["producer"] == "task-service"
    assert event["data"]["task"] == task  # the task exactly as the API shows it
    assert event["data"]["owner_id"] == user.id
    assert latency < 1.0, f"event arrived after {latency:.3f}s"


def test_first_message_authentication_and_every_change_type(
    client: httpx.Client, gateway: ServiceProcess, user: User
) -> None:
    with live(gateway, user, first_message=True) as socket:
        task = create_task(client, user)
        assert next_event(socket)["type"] == "task.created"
        url = f"{API}/tasks/{task['id']}"
        assert client.patch(url, json={"title": "renamed"}, headers=user.headers).status_code == 200
        updated = next_event(socket)
        assert (updated["type"], updated["data"]["task"]["title"]) == ("task.updated", "renamed")
        assert client.patch(f"{url}/complete", headers=user.headers).status_code == 200
        assert next_event(socket)["type"] == "task.completed"
        assert client.delete(url, headers=user.headers).status_code == 204
        deleted = next_event(socket)
        assert (deleted["type"], deleted["subject_id"]) == ("task.deleted", str(task["id"]))
        socket.send(json.dumps({"type": "ping"}))
        assert next_event(socket) == {"type": "pong"}


@pytest.mark.parametrize("token", ["", "not-a-jwt", "eyJhbGciOiJIUzI1NiJ9.e30.x"])
def test_a_bad_token_closes_the_socket_with_1008_and_no_event(
    gateway: ServiceProcess, token: str
) -> None:
    with connect(ws_url(gateway), open_timeout=5) as socket:
        socket.send(json.dumps({"token": token}))
        with pytest.raises(ConnectionClosed) as closed:
            socket.recv(timeout=5)
    assert closed.value.rcvd is not None
    assert closed.value.rcvd.code == 1008


def test_users_receive_only_their_tasks_and_a_removed_assignee_stops(
    client: httpx.Client, gateway: ServiceProcess
) -> None:
    alice = register_and_login(client, "alice")
    bob = register_and_login(client, "bob")
    with live(gateway, alice) as alice_socket, live(gateway, bob) as bob_socket:
        private = create_task(client, alice)
        assert next_event(alice_socket)["subject_id"] == str(private["id"])
        no_event(bob_socket)  # bob never sees alice's own task

        shared = create_task(client, alice, assignee_id=bob.id)
        assert next_event(alice_socket)["subject_id"] == str(shared["id"])
        to_bob = next_event(bob_socket)
        assert (to_bob["type"], to_bob["data"]["assignee_id"]) == ("task.created", bob.id)

        url = f"{API}/tasks/{shared['id']}"
        response = client.patch(url, json={"assignee_id": None}, headers=alice.headers)
        assert response.status_code == 200
        assert next_event(alice_socket)["type"] == "task.assigned"
        lost = next_event(bob_socket)
        assert lost == {
            "type": "task.access_lost",
            "id": lost["id"],
            "subject_id": str(shared["id"]),
            "occurred_at": lost["occurred_at"],
        }
        client.patch(url, json={"title": "after bob left"}, headers=alice.headers)
        assert next_event(alice_socket)["type"] == "task.updated"
        no_event(bob_socket)


def test_a_client_on_either_gateway_replica_receives_the_event(
    client: httpx.Client, suite: Suite, gateway: ServiceProcess, user: User
) -> None:
    second = suite.start_gateway("api-gateway-2")
    try:
        with live(gateway, user) as first_socket, live(second, user) as second_socket:
            task = create_task(client, user)  # written through the first gateway
            for socket in (first_socket, second_socket):
                event = next_event(socket)
                assert (event["type"], event["subject_id"]) == ("task.created", str(task["id"]))
    finally:
        second.stop()


# -- access that ends at once ------------------------------------------------------------------


def make_admin(suite: Suite, username: str) -> None:
    assert suite.user is not None
    done = subprocess.run(
        [sys.executable, "-m", "user_service.cli", "make-admin", username],
        env=suite.user.env,
        capture_output=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr.decode()


def login(client: httpx.Client, user: User) -> str:
    response = client.post(
        f"{API}/auth/login", json={"username": user.username, "password": user.password}
    )
    assert response.status_code == 200, response.text
    return str(response.json()["access_token"])


def refused_everywhere(suite: Suite, token: str) -> bool:
    """The token is refused (401) by the gateway and by every service directly."""
    headers = {"Authorization": f"Bearer {token}"}
    assert suite.gateway is not None
    assert suite.user is not None
    assert suite.stats is not None
    probes = [
        f"{suite.gateway.url}{API}/tasks/",
        f"{suite.gateway.url}{API}/stats/",
        f"{suite.user.url}{API}/auth/me",
        f"{suite.stats.url}{API}/stats/",
        *(f"{replica.url}{API}/tasks/" for replica in suite.task_replicas),
    ]
    with httpx.Client(timeout=5.0) as http:
        return all(http.get(url, headers=headers).status_code == 401 for url in probes)


def accepted_by_task_routes(client: httpx.Client, token: str) -> bool:
    response = client.get(f"{API}/tasks/", headers={"Authorization": f"Bearer {token}"})
    return response.status_code == 200


def assert_revoked_within_bound(suite: Suite, token: str) -> float:
    took = wait_until(
        lambda: refused_everywhere(suite, token),
        timeout=REVOCATION_BOUND,
        interval=0.05,
        what="the old token to be refused by the gateway and every service",
    )
    return took


def test_logout_voids_that_session_everywhere_and_closes_its_socket(
    client: httpx.Client, suite: Suite, gateway: ServiceProcess
) -> None:
    user = register_and_login(client, "logout")
    login_response = client.post(
        f"{API}/auth/login", json={"username": user.username, "password": user.password}
    )
    pair = login_response.json()
    other_session = User(user.id, user.username, user.email, user.password, pair["access_token"])
    assert accepted_by_task_routes(client, other_session.token)
    with live(gateway, other_session) as socket:
        out = client.post(f"{API}/auth/logout", json={"refresh_token": pair["refresh_token"]})
        assert out.status_code == 204
        assert_revoked_within_bound(suite, other_session.token)
        with pytest.raises(ConnectionClosed) as closed:
            next_event(socket, timeout=2)
        assert closed.value.rcvd is not None
        assert closed.value.rcvd.code == 1008
    # the first session (another sid) still works
    assert accepted_by_task_routes(client, user.token)


def test_deactivation_and_demotion_void_old_tokens_but_not_new_ones(
    client: httpx.Client, suite: Suite
) -> None:
    admin = register_and_login(client, "admin")
    make_admin(suite, admin.username)
    admin.token = login(client, admin)
    target = register_and_login(client, "target")
    admin_url = f"{API}/users/{target.id}"

    # promotion voids the tokens without the admin claim, a new login works at once
    response = client.patch(admin_url, json={"is_superuser": True}, headers=admin.headers)
    assert response.status_code == 200, response.text
    assert_revoked_within_bound(suite, target.token)
    promoted = login(client, target)
    assert accepted_by_task_routes(client, promoted)

    # demotion: the token that says "admin" stops working everywhere
    response = client.patch(admin_url, json={"is_superuser": False}, headers=admin.headers)
    assert response.status_code == 200, response.text
    assert_revoked_within_bound(suite, promoted)
    demoted = login(client, target)
    assert accepted_by_task_routes(client, demoted)

    # deactivation
    response = client.patch(admin_url, json={"is_active": False}, headers=admin.headers)
    assert response.status_code == 200, response.text
    assert_revoked_within_bound(suite, demoted)
    assert (
        client.post(
            f"{API}/auth/login", json={"username": target.username, "password": target.password}
        ).status_code
        == 401
    )


def test_password_change_ends_every_session(client: httpx.Client, suite: Suite) -> None:
    user = register_and_login(client, "pw")
    other = login(client, user)
    response = client.post(
        f"{API}/users/me/password",
        json={"current_password": user.password, "new_password": "a brand new password"},
        headers=user.headers,
    )
    assert response.status_code == 204
    assert_revoked_within_bound(suite, user.token)
    assert_revoked_within_bound(suite, other)


def test_deleting_a_user_ends_access_and_cleans_up_their_tasks(
    client: httpx.Client, suite: Suite, gateway: ServiceProcess
) -> None:
    leaving = register_and_login(client, "leaving")
    staying = register_and_login(client, "staying")
    theirs = create_task(client, leaving, assignee_id=staying.id)
    mine = create_task(client, staying, assignee_id=leaving.id)
    blocked = create_task(client, staying, depends_on=[])
    dep = client.post(
        f"{API}/tasks/{blocked['id']}/dependencies",
        json={"depends_on_id": mine["id"]},
        headers=staying.headers,
    )
    assert dep.status_code == 201

    with live(gateway, staying) as socket:
        deleted = client.request(
            "DELETE",
            f"{API}/users/me",
            json={"current_password": leaving.password},
            headers=leaving.headers,
        )
        assert deleted.status_code == 204
        assert_revoked_within_bound(suite, leaving.token)
        seen: dict[str, set[str]] = {}

        def arrived() -> bool:
            return str(mine["id"]) in seen.get("task.assigned", set()) and str(
                theirs["id"]
            ) in seen.get("task.deleted", set())

        deadline = time.monotonic() + 5
        while not arrived() and time.monotonic() < deadline:
            event = next_event(socket, timeout=max(0.1, deadline - time.monotonic()))
            seen.setdefault(event["type"], set()).add(event["subject_id"])
        assert str(mine["id"]) in seen.get("task.assigned", set())
        assert str(theirs["id"]) in seen.get("task.deleted", set())

    # their own task is gone, the one assigned to them is unassigned
    assert client.get(f"{API}/tasks/{theirs['id']}", headers=staying.headers).status_code == 404
    kept = client.get(f"{API}/tasks/{mine['id']}", headers=staying.headers).json()
    assert kept["assignee_id"] is None
    assert kept["version"] == mine["version"] + 1  # one change: the unassignment
    still = client.get(f"{API}/tasks/{blocked['id']}", headers=staying.headers).json()
    assert still["depends_on"] == [mine["id"]]
    # a deleted user can no longer be assigned, with no call needed to know it
    response = client.post(
        f"{API}/tasks/", json={"title": "x", "assignee_id": leaving.id}, headers=staying.headers
    )
    is_problem(response, 422)


# -- statistics follow every change ------------------------------------------------------------


def test_stats_reflect_each_change_on_the_next_read(client: httpx.Client, user: User) -> None:
    def stats() -> dict[str, Any]:
        response = client.get(f"{API}/stats/", headers=user.headers)
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    assert stats()["total_tasks"] == 0
    created = []
    for expected in range(1, 6):
        stats()  # the cached copy a frontend just displayed
        created.append(create_task(client, user))
        assert stats()["total_tasks"] == expected
    done = client.patch(f"{API}/tasks/{created[0]['id']}/complete", headers=user.headers)
    assert done.status_code == 200
    after = stats()
    assert (after["completed_tasks"], after["by_status"]["done"]) == (1, 1)
    assert client.delete(f"{API}/tasks/{created[1]['id']}", headers=user.headers).status_code == 204
    assert stats()["total_tasks"] == 4


def test_status_reports_the_event_pipeline(client: httpx.Client, suite: Suite, user: User) -> None:
    create_task(client, user)
    admin = register_and_login(client, "statusadmin")
    make_admin(suite, admin.username)
    admin.token = login(client, admin)

    def caught_up() -> bool:
        events = client.get("/api/status", headers=admin.headers).json()["events"]
        groups = {
            (stream, group): info
            for stream, body in events["streams"].items()
            for group, info in body["groups"].items()
        }
        return (
            events["status"] == "ok"
            and groups.get(("user", "task-service"), {}).get("lag") == 0
            and groups.get(("task", "stats-service"), {}).get("lag") == 0
            and events["outbox_backlog"].get("task-service") == 0
        )

    wait_until(caught_up, timeout=10, interval=0.2, what="consumers and relays caught up")
