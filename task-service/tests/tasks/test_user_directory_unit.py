"""UserDirectory against a respx-faked user-service and a real (or unreachable) Redis."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import httpx
import pytest
import respx
from task_service.user_directory import UserDirectory
from taskflow_kit.redis_client import create_redis
from taskflow_kit.resilience import CircuitBreaker, ResilientClient, UpstreamUnavailable
from taskflow_kit.testing import test_redis_url

URL = "http://users.unit"


async def make_directory(redis_url: str, *, ttl: int = 60) -> UserDirectory:
    return UserDirectory(
        client=ResilientClient(
            name="user-service",
            base_url=URL,
            retries=1,
            backoff=0.001,
            breaker=CircuitBreaker(failure_threshold=3),
        ),
        redis=create_redis(redis_url, timeout=0.2),
        key_prefix=f"test:{uuid.uuid4().hex[:10]}:",
        cache_ttl_seconds=ttl,
    )


@pytest.fixture
async def directory() -> AsyncIterator[UserDirectory]:
    users = await make_directory(test_redis_url())
    yield users
    await users.forget(1)
    await users.client.aclose()


@respx.mock(base_url=URL)
async def test_active_inactive_and_missing(
    directory: UserDirectory, respx_mock: respx.Router
) -> None:
    respx_mock.get("/api/v1/users/1").respond(
        200, json={"id": 1, "username": "a", "is_active": True}
    )
    respx_mock.get("/api/v1/users/2").respond(
        200, json={"id": 2, "username": "b", "is_active": False}
    )
    respx_mock.get("/api/v1/users/3").respond(404, json={"status": 404})
    respx_mock.get("/api/v1/users/4").respond(200, json={"id": 4, "username": "d"})
    assert await directory.is_active_user(1, token="t") is True
    assert await directory.is_active_user(2, token="t") is False
    assert await directory.is_active_user(3, token="t") is False
    assert await directory.is_active_user(4, token="t") is True  # no flag: a public profile
    assert respx_mock.calls.last.request.headers["Authorization"] == "Bearer t"


@respx.mock(base_url=URL)
async def test_positive_answer_is_cached_until_forgotten(
    directory: UserDirectory, respx_mock: respx.Router
) -> None:
    route = respx_mock.get("/api/v1/users/1").respond(200, json={"id": 1, "is_active": True})
    for _ in range(3):
        assert await directory.is_active_user(1, token="t")
    assert route.call_count == 1
    await directory.forget(1)
    assert await directory.is_active_user(1, token="t")
    assert route.call_count == 2


@respx.mock(base_url=URL)
async def test_upstream_failures_raise_503(
    directory: UserDirectory, respx_mock: respx.Router
) -> None:
    respx_mock.get("/api/v1/users/5").mock(side_effect=httpx.ConnectError("refused"))
    with pytest.raises(UpstreamUnavailable) as raised:
        await directory.is_active_user(5, token="t")
    assert raised.value.status_code == 503
    assert "Retry-After" in raised.value.headers
    respx_mock.get("/api/v1/users/6").respond(200, text="not json")
    with pytest.raises(UpstreamUnavailable):
        await directory.is_active_user(6, token="t")


@respx.mock(base_url=URL)
async def test_redis_down_costs_only_a_call(respx_mock: respx.Router) -> None:
    users = await make_directory("redis://127.0.0.1:1/0")  # nothing listens on port 1
    route = respx_mock.get("/api/v1/users/1").respond(200, json={"id": 1, "is_active": True})
    assert await users.is_active_user(1, token="t")
    assert await users.is_active_user(1, token="t")
    assert route.call_count == 2
    await users.client.aclose()
