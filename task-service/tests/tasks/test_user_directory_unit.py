"""UserDirectory: the directory of known users (real PostgreSQL) first, then a respx-faked
user-service for users it does not know."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator

import httpx
import pytest
import respx
from fastapi import FastAPI
from task_service.users.directory import UserDirectory
from task_service.users.repository import KnownUserRepository
from taskflow_kit.resilience import CircuitBreaker, ResilientClient, UpstreamUnavailable

URL = "http://users.unit"
NOW = dt.datetime(2026, 12, 1, tzinfo=dt.UTC)

pytestmark = pytest.mark.usefixtures("clean")


@pytest.fixture
async def directory(app: FastAPI) -> AsyncIterator[UserDirectory]:
    client = ResilientClient(
        name="user-service",
        base_url=URL,
        retries=1,
        backoff=0.001,
        breaker=CircuitBreaker(failure_threshold=3),
    )
    async with app.state.pool.acquire() as connection:
        yield UserDirectory(client=client, known=KnownUserRepository(connection))
    await client.aclose()


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


@respx.mock(base_url=URL, assert_all_called=False)
async def test_known_users_are_answered_without_a_call(
    directory: UserDirectory, respx_mock: respx.Router
) -> None:
    route = respx_mock.get(path__regex=r"^/api/v1/users/\d+$").respond(500)
    known = directory.known
    await known.record(1, username="a", is_active=True, deleted=False, event_at=NOW)
    await known.record(2, username="b", is_active=False, deleted=False, event_at=NOW)
    await known.record(3, username=None, is_active=False, deleted=True, event_at=NOW)
    assert await directory.is_active_user(1, token="t") is True
    assert await directory.is_active_user(2, token="t") is False
    assert await directory.is_active_user(3, token="t") is False
    assert route.call_count == 0


async def test_an_older_event_never_overwrites_a_newer_one(directory: UserDirectory) -> None:
    known = directory.known
    later = NOW + dt.timedelta(seconds=1)
    await known.record(1, username="a", is_active=False, deleted=False, event_at=later)
    await known.record(1, username="a", is_active=True, deleted=False, event_at=NOW)
    row = await known.get(1)
    assert row is not None
    assert (row.is_active, row.event_at) == (False, later)


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
async def test_a_known_user_is_answered_while_user_service_is_unreachable(
    directory: UserDirectory, respx_mock: respx.Router
) -> None:
    respx_mock.get(path__regex=r"^/api/v1/users/[78]$").mock(
        side_effect=httpx.ConnectError("refused")
    )
    await directory.known.record(7, username="g", is_active=True, deleted=False, event_at=NOW)
    assert await directory.is_active_user(7, token="t") is True
    with pytest.raises(UpstreamUnavailable):
        await directory.is_active_user(8, token="t")  # unknown: no guess
