"""Redis comes back without its data (`FLUSHALL` on a throwaway Redis, never the shared one):
nothing is forgotten. A user-service and a task-service of their own run on that Redis; a user
is deleted while the task-service is down, then Redis is emptied before anyone read the event.
The event is sent again from user-service's outbox (which also rebuilds the revocation map):
the task-service, started again after the loss, never accepts the deleted user's token and
unassigns them from a task (its consumer group, gone with the data, reads the re-sent event)."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest
import redis

from tests.harness import (
    ALL_SERVICES,
    ServiceProcess,
    Suite,
    free_port,
    require_services,
    run_async,
    start_and_wait,
    wait_until,
)
from tests.reliability import figures
from tests.reliability.test_faults import ThrowawayRedis

require_services("user_service", "task_service")
pytestmark = pytest.mark.suite
assert ALL_SERVICES  # the suite fixture starts them all; only these two are used here

API = "/api/v1"
PASSWORD = "a long enough passphrase"


@dataclass
class LossRig:
    suite: Suite
    redis: ThrowawayRedis
    user: ServiceProcess
    task: ServiceProcess
    task_env: dict[str, str]


@pytest.fixture(scope="module")
def loss_rig(suite: Suite) -> Iterator[LossRig]:
    from taskflow_kit.migrations import ensure_database

    server = ThrowawayRedis(free_port(suite.ports))
    server.start()
    run_id = uuid.uuid4().hex[:8]
    users_db = f"{suite.database_server}/tf_suite_loss_users_{run_id}"
    tasks_db = f"{suite.database_server}/tf_suite_loss_tasks_{run_id}"
    for url in (users_db, tasks_db):
        run_async(lambda url=url: ensure_database(url))  # type: ignore[misc]
        suite.databases.append(url)
    env = suite.base_env(redis_prefix=f"{suite.redis_prefix}loss:") | {"REDIS_URL": server.url}
    user = suite.add_process(
        "loss-user-service",
        "user_service",
        env | {"USER_SERVICE_DATABASE_URL": users_db, "BCRYPT_ROUNDS": "4"},
    )
    start_and_wait([user])
    task_env = env | {"TASK_SERVICE_DATABASE_URL": tasks_db, "USER_SERVICE_URL": user.url}
    task = suite.add_process("loss-task-service-1", "task_service", task_env)
    start_and_wait([task])
    try:
        yield LossRig(suite, server, user, task, task_env)
    finally:
        for process in (task, user):
            process.stop()
        server.stop()


def account(http: httpx.Client, rig: LossRig, name: str) -> tuple[int, dict[str, str]]:
    username = f"{name}{uuid.uuid4().hex[:6]}"
    created = http.post(
        f"{rig.user.url}{API}/auth/register",
        json={"username": username, "email": f"{username}@example.com", "password": PASSWORD},
    )
    assert created.status_code == 201, created.text
    login = http.post(
        f"{rig.user.url}{API}/auth/login", json={"username": username, "password": PASSWORD}
    )
    assert login.status_code == 200, login.text
    return created.json()["id"], {"Authorization": f"Bearer {login.json()['access_token']}"}


def test_redis_losing_its_data_forgets_no_revocation_and_no_event(loss_rig: LossRig) -> None:
    rig = loss_rig
    http = httpx.Client(timeout=10.0)
    _, alice = account(http, rig, "alice")
    bob_id, bob = account(http, rig, "bob")
    task = http.post(
        f"{rig.task.url}{API}/tasks/",
        json={"title": "shared", "assignee_id": bob_id},
        headers=alice,
    )
    assert task.status_code == 201, task.text
    task_url = f"{rig.task.url}{API}/tasks/{task.json()['id']}"
    assert http.get(f"{rig.task.url}{API}/tasks/", headers=bob).status_code == 200

    # The task replica is down while bob is deleted and Redis loses the event unread.
    rig.task.stop()
    client = redis.Redis.from_url(rig.redis.url)
    prefix = f"{rig.suite.redis_prefix}loss:"
    try:
        deleted = http.request(
            "DELETE",
            f"{rig.user.url}{API}/users/me",
            headers=bob,
            json={"current_password": PASSWORD},  # deletion re-authenticates (issue 21)
        )
        assert deleted.status_code == 204

        def deletion_published() -> bool:
            entries = client.xrange(f"{prefix}events:user")
            return any(b"user.deleted" in fields[b"event"] for _, fields in entries)

        wait_until(deletion_published, timeout=10, what="user.deleted in the stream")
        client.flushall()
        lost_at = time.monotonic()
        figures.count("fault_redis_data_loss", "faults_injected")
        # user-service's relay notices on its next round and sends its outbox again.
        wait_until(
            lambda: bool(client.exists(f"{prefix}events:epoch:user-service")),
            timeout=15,
            what="user-service's relay to re-send its events",
        )
        rebuilt_after = time.monotonic() - lost_at
        assert deletion_published()
        assert client.hexists(f"{prefix}revocation:users", str(bob_id))
    finally:
        client.close()

    # The replica starts again, after the loss: it never lets bob in, and it catches up.
    rig.task.start()
    rig.task.wait_ready()
    ready_after = time.monotonic() - lost_at
    statuses: list[int] = []

    def bob_refused() -> bool:
        response = http.get(f"{rig.task.url}{API}/tasks/", headers=bob)
        statuses.append(response.status_code)
        return response.status_code == 401

    wait_until(bob_refused, timeout=15, what="bob refused by the replica started after the loss")

    def unassigned() -> bool:
        return http.get(task_url, headers=alice).json()["assignee_id"] is None

    wait_until(unassigned, timeout=15, what="bob unassigned (user.deleted consumed)")
    consumed_after = time.monotonic() - lost_at
    http.close()
    assert set(statuses) <= {401, 503}, statuses  # 503 only while the map was being rebuilt
    figures.count("fault_redis_data_loss", "rebuilt_ms", int(rebuilt_after * 1000))
    figures.count("fault_redis_data_loss", "replica_ready_ms", int(ready_after * 1000))
    figures.count("fault_redis_data_loss", "consumed_ms", int(consumed_after * 1000))
    print(
        f"\nRedis emptied -> events re-sent, revocation map rebuilt: {rebuilt_after * 1000:.0f} ms;"
        f" replica ready again {ready_after * 1000:.0f} ms and user.deleted consumed"
        f" {consumed_after * 1000:.0f} ms after the loss;"
        f" its answers to the revoked token: {statuses}"
    )


@pytest.fixture(scope="module", autouse=True)
def _write_figures() -> Iterator[None]:
    yield
    figures.write()
