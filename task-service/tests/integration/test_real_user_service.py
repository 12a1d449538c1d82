"""Assignment checked against a real user-service process (uvicorn on a free port, own database)."""

from __future__ import annotations

import asyncio
import importlib.util
import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy.engine import make_url
from task_service.config import Settings
from task_service.main import create_app
from taskflow_kit.migrations import drop_database
from taskflow_kit.testing import serving, test_database_server_url, test_redis_url, unique_name

pytestmark = [
    pytest.mark.skipif(
        importlib.util.find_spec("user_service") is None,
        reason="user-service is not in the workspace (module user_service cannot be imported)",
    ),
    pytest.mark.usefixtures("clean"),
]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class UserServiceProcess:
    url: str
    env: dict[str, str]
    process: subprocess.Popen[bytes]


@pytest.fixture(scope="module")
def user_service_process(tmp_path_factory: pytest.TempPathFactory) -> Iterator[UserServiceProcess]:
    database_url = (
        make_url(test_database_server_url())
        .set(database=unique_name("tf_tasks_users"))
        .render_as_string(hide_password=False)
    )
    port = free_port()
    env = {
        **os.environ,
        "ENVIRONMENT": "test",
        "USER_SERVICE_DATABASE_URL": database_url,
        "MIGRATE_ON_START": "true",
        "BCRYPT_ROUNDS": "4",
        "REDIS_URL": test_redis_url(),
        "REDIS_PREFIX": f"test:{uuid.uuid4().hex[:10]}:",
        "TRUST_FORWARDED_FOR": "false",
        "LOG_JSON": "false",
        "LOG_LEVEL": "WARNING",
    }
    log = (tmp_path_factory.mktemp("user-service") / "user-service.log").open("wb")
    command = [sys.executable, "-m", "uvicorn", "user_service.main:create_app", "--factory"]
    process = subprocess.Popen(
        [*command, "--host", "127.0.0.1", "--port", str(port)],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert process.poll() is None, "user-service exited; see its log"
            assert time.monotonic() < deadline, "user-service did not start within 60 s"
            time.sleep(0.2)
        yield UserServiceProcess(url=url, env=env, process=process)
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
        log.close()
        asyncio.run(drop_database(database_url))


def register(service: UserServiceProcess, name: str) -> tuple[int, dict[str, str]]:
    """Register `name` and log in: (user id, Authorization header)."""
    password = "a long enough passphrase"
    created = httpx.post(
        f"{service.url}/api/v1/auth/register",
        json={"email": f"{name}@example.com", "username": name, "password": password},
    )
    assert created.status_code == 201, created.text
    return created.json()["id"], login(service, name)


def login(service: UserServiceProcess, name: str) -> dict[str, str]:
    response = httpx.post(
        f"{service.url}/api/v1/auth/login",
        json={"username": name, "password": "a long enough passphrase"},
    )
    assert response.status_code == 200, response.text
    return {"Authorization": f"Bearer {response.json()['access_token']}"}


@pytest.fixture
async def wired_client(
    user_service_process: UserServiceProcess, settings: Settings
) -> AsyncIterator[tuple[httpx.AsyncClient, FastAPI]]:
    """task-service in process, on the test database, asking the real user-service."""
    app = create_app(settings.model_copy(update={"user_service_url": user_service_process.url}))
    async with serving(app) as served:
        transport = httpx.ASGITransport(app=served)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
            yield http, app


async def test_assignment_against_the_real_user_service(
    user_service_process: UserServiceProcess,
    wired_client: tuple[httpx.AsyncClient, FastAPI],
) -> None:
    client, _ = wired_client
    suffix = uuid.uuid4().hex[:6]
    ann_id, _ = register(user_service_process, f"ann{suffix}")
    bob_id, bob = register(user_service_process, f"bob{suffix}")
    carl_id, _ = register(user_service_process, f"carl{suffix}")

    # ann becomes an administrator and deactivates carl
    promoted = subprocess.run(
        [sys.executable, "-m", "user_service.cli", "make-admin", f"ann{suffix}"],
        env=user_service_process.env,
        capture_output=True,
        check=False,
    )
    assert promoted.returncode == 0, promoted.stderr
    ann = login(user_service_process, f"ann{suffix}")
    deactivated = httpx.patch(
        f"{user_service_process.url}/api/v1/users/{carl_id}",
        json={"is_active": False},
        headers=ann,
    )
    assert deactivated.status_code == 200, deactivated.text

    created = await client.post(
        "/api/v1/tasks/", json={"title": "for bob", "assignee_id": bob_id}, headers=ann
    )
    assert created.status_code == 201, created.text
    task = created.json()
    assert (task["owner_id"], task["assignee_id"]) == (ann_id, bob_id)
    # bob, the assignee, sees it and may move its status
    seen = await client.get(f"/api/v1/tasks/{task['id']}", headers=bob)
    assert seen.status_code == 200
    moved = await client.patch(f"/api/v1/tasks/{task['id']}/complete", headers=bob)
    assert moved.json()["status"] == "done"

    for not_active in (carl_id, 10**9):
        refused = await client.post(
            "/api/v1/tasks/", json={"title": "x", "assignee_id": not_active}, headers=ann
        )
        assert refused.status_code == 422, refused.text
        assert refused.json()["errors"][0]["loc"] == ["body", "assignee_id"]


async def test_unreachable_user_service_is_503(
    settings: Settings, user_service_process: UserServiceProcess
) -> None:
    """A closed port where user-service should be: 503 with Retry-After, no task."""
    _, dave = register(user_service_process, f"dave{uuid.uuid4().hex[:6]}")
    app = create_app(
        settings.model_copy(update={"user_service_url": f"http://127.0.0.1:{free_port()}"})
    )
    async with serving(app) as served:
        transport = httpx.ASGITransport(app=served)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            response = await client.post(
                "/api/v1/tasks/", json={"title": "x", "assignee_id": 1}, headers=dave
            )
            assert response.status_code == 503
            assert "Retry-After" in response.headers
            listing = await client.get("/api/v1/tasks/", headers=dave)
            assert listing.json()["total"] == 0
