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


@pytest.fixture
def restore_replicas(suite: Suite, client: httpx.Client) -> Iterator[list[ServiceProcess]]:
    """The task-service replicas, for a test that pauses or kills them.

    Afterwards every replica runs again and the gateway serves tasks again (breaker closed,
    replicas back in rotation), so later tests start from a healthy system.
    """
    replicas = suite.task_replicas
    assert len(replicas) == 2, "task-service has not landed"
    yield replicas
    for replica in replicas:
        replica.ensure_running()
    probe = register_and_login(client, "restore")
    wait_until(
        lambda: gateway_serves_tasks(client, probe),
        timeout=30,
        interval=0.25,
        what="the gateway to serve tasks again after the replicas were restored",
    )
