"""Fixtures: a migrated database per session, a Redis prefix, the app, a fake user-service."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
import respx
from fastapi import FastAPI
from task_factories import FakeUserService
from task_service.config import Settings
from task_service.database import Base
from task_service.main import create_app
from taskflow_kit.testing import (
    WithState,
    empty_tables,
    mark_revocations_complete,
    migrated_database,
    serving,
    test_redis_url,
)

ALEMBIC_INI = Path(__file__).resolve().parents[1] / "alembic.ini"
USER_SERVICE_URL = "http://user-service.test"


@pytest.fixture(scope="session")
async def database_url() -> AsyncIterator[str]:
    async with migrated_database("tf_tasks", ALEMBIC_INI) as url:
        yield url


@pytest.fixture(scope="session")
def settings(database_url: str) -> Settings:
    return Settings(
        environment="test",
        database_url=database_url,
        redis_url=test_redis_url(),
        redis_prefix=f"test:{uuid.uuid4().hex[:10]}:",
        user_service_url=USER_SERVICE_URL,
        migrate_on_start=False,
        log_json=False,
        log_level="WARNING",
    )


@pytest.fixture(scope="session")
async def served(settings: Settings) -> AsyncIterator[WithState]:
    # No user-service here: its relay's epoch key is set as it would set it, so the (empty)
    # revocation map counts as complete (kept by `clean` too, for the apps tests start).
    await mark_revocations_complete(settings.redis_url, settings.redis_prefix)
    async with serving(create_app(settings)) as served:
        yield served


@pytest.fixture(scope="session")
def app(served: WithState) -> FastAPI:
    assert isinstance(served.app, FastAPI)
    return served.app


@pytest.fixture
async def clean(app: FastAPI, settings: Settings) -> AsyncIterator[None]:
    """Tests really commit: empty the tables and this session's Redis keys afterwards."""
    yield
    await empty_tables(app.state.engine, Base.metadata)
    app.state.user_client.breaker.record_success()  # a closed breaker for the next test
    keys = [key async for key in app.state.redis.scan_iter(match=f"{settings.redis_prefix}*")]
    if keys:
        await app.state.redis.delete(*keys)
    await mark_revocations_complete(settings.redis_url, settings.redis_prefix)


@pytest.fixture
def user_service() -> Iterator[FakeUserService]:
    """user-service faked over HTTP with respx: users 1-9 exist and are active by default."""
    fake = FakeUserService(active={1, 2, 3, 4, 5, 6, 7, 8, 9})
    with respx.mock(base_url=USER_SERVICE_URL, assert_all_called=False) as router:
        router.get(path__regex=r"^/api/v1/users/(?P<user_id>\d+)$").mock(side_effect=fake.handle)
        yield fake


@pytest.fixture
async def client(
    served: WithState, clean: None, user_service: FakeUserService
) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=served)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
        yield http
