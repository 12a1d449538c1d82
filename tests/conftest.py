"""Session fixtures for the whole-suite tests: one running TaskFlow per test session."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from tests.harness import ServiceProcess, Suite, User, register_and_login, wait_until


@pytest.fixture(scope="session")
def suite(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Suite]:
    """Every service that has landed, as real processes; stopped and cleaned up at the end."""
    running = Suite(log_dir=tmp_path_factory.mktemp("suite-logs"))
    try:
        running.start()
        yield running
    finally:
        running.close()


@pytest.fixture(scope="session")
def gateway(suite: Suite) -> ServiceProcess:
    assert suite.gateway is not None, "api-gateway has not landed"
    return suite.gateway


@pytest.fixture(scope="session")
def client(gateway: ServiceProcess) -> Iterator[httpx.Client]:
    """A plain HTTP client on the gateway's URL (the only URL clients ever use)."""
    with httpx.Client(base_url=gateway.url, timeout=10.0) as http:
        yield http


@pytest.fixture
def user(client: httpx.Client) -> User:
    """A fresh account, logged in (frontend spelling)."""
    return register_and_login(client, "suite")


def gateway_serves_tasks(client: httpx.Client, user: User, *, rounds: int = 6) -> bool:
    """True when `rounds` consecutive task reads through the gateway all succeed."""
    for _ in range(rounds):
        try:
            response = client.get("/api/v1/tasks/", headers=user.headers, timeout=5.0)
        except httpx.HTTPError:
            return False
        if response.status_code != 200:
            return False
    return True


def task_replicas_in_rotation(client: httpx.Client, suite: Suite, probe: User) -> bool:
    """True when a task read succeeds and `/api/status` then shows every task replica up and
    the task breaker closed (the read lets a half-open breaker close)."""
    try:
        client.get("/api/v1/tasks/", headers=probe.headers, timeout=5.0)
        upstream = client.get("/api/status", timeout=5.0).json()["upstreams"]["task-service"]
    except (httpx.HTTPError, ValueError, KeyError):
        return False
    states = {replica["url"]: replica["state"] for replica in upstream["replicas"]}
    expected = {replica.url: "up" for replica in suite.task_replicas}
    return bool(upstream["circuit"] == "closed" and states == expected)


@pytest.fixture
def restore_replicas(suite: Suite, client: httpx.Client) -> Iterator[list[ServiceProcess]]:
    """The task-service replicas, for a test that pauses or kills them.

    Before: every replica is up and in the gateway's rotation. Afterwards every replica runs
    again, the gateway has every one back in rotation (breaker closed) and serves tasks, so later
    tests start from a healthy system.
    """
    replicas = suite.task_replicas
    assert len(replicas) == 2, "task-service has not landed"
    probe = register_and_login(client, "rotation")
    wait_until(
        lambda: task_replicas_in_rotation(client, suite, probe),
        timeout=20,
        interval=0.2,
        what="every task-service replica to be up in /api/status",
    )
    yield replicas
    for replica in replicas:
        replica.ensure_running()
    wait_until(
        lambda: task_replicas_in_rotation(client, suite, probe),
        timeout=30,
        interval=0.2,
        what="the gateway to take every restored replica back into rotation",
    )
    wait_until(
        lambda: gateway_serves_tasks(client, probe),
        timeout=30,
        interval=0.25,
        what="the gateway to serve tasks again after the replicas were restored",
    )
