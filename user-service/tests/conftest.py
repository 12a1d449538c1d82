"""user-service fixtures: one migrated database per test session, a fresh app (own Redis key
prefix) per test, and every table emptied after each test. Requests really commit."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import update
from taskflow_kit.redis_client import create_redis
from taskflow_kit.testing import (
    WithState,
    empty_tables,
    migrated_database,
    serving,
    test_redis_url,
)
from user_service.config import ALEMBIC_INI, Settings
from user_service.main import create_app
from user_service.models import Base, User

SESSION_PREFIX = f"tf_users_test_{uuid.uuid4().hex[:8]}:"
PASSWORD = "correct horse battery staple"
JWT_SECRET = "user-service-test-secret-0123456789abcdef"


@pytest.fixture(scope="session")
async def database_url() -> AsyncIterator[str]:
    async with migrated_database("tf_users", ALEMBIC_INI) as url:
        yield url
    redis = create_redis(test_redis_url())
    try:
        keys = [key async for key in redis.scan_iter(match=f"{SESSION_PREFIX}*")]
        if keys:
            await redis.delete(*keys)
    finally:
        await redis.aclose()


@pytest.fixture
def settings(database_url: str) -> Settings:
    return Settings(
        environment="test",
        database_url=database_url,
        redis_url=test_redis_url(),
        redis_prefix=f"{SESSION_PREFIX}{uuid.uuid4().hex[:8]}:",
        jwt_secret=JWT_SECRET,
        bcrypt_rounds=4,
        migrate_on_start=False,
        log_json=False,
        log_level="WARNING",
    )


@pytest.fixture
async def served(settings: Settings) -> AsyncIterator[WithState]:
    """The app with its lifespan running (its requests carry the state it yielded)."""
    app = create_app(settings)
    async with serving(app) as served:
        try:
            yield served
        finally:
            await empty_tables(app.state.engine, Base.metadata)


@pytest.fixture
def app(served: WithState) -> FastAPI:
    assert isinstance(served.app, FastAPI)
    return served.app


@pytest.fixture
async def client(served: WithState) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=served)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        yield client


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@dataclass
class Account:
    user: dict[str, Any]
    password: str
    tokens: dict[str, Any]

    @property
    def id(self) -> int:
        return int(self.user["id"])

    @property
    def headers(self) -> dict[str, str]:
        return bearer(self.tokens["access_token"])


class Api:
    """Keyword-only helpers over the HTTP API, so tests read as the client's story."""

    def __init__(self, client: httpx.AsyncClient, app: FastAPI) -> None:
        self.client = client
        self.app = app

    async def register(
        self,
        *,
        username: str = "alice",
        email: str | None = None,
        password: str = PASSWORD,
        full_name: str | None = None,
    ) -> dict[str, Any]:
        body: dict[str, Any] = {
            "username": username,
            "email": email or f"{username}@example.com",
            "password": password,
        }
        if full_name is not None:
            body["full_name"] = full_name
        response = await self.client.post("/api/v1/auth/register", json=body)
        assert response.status_code == 201, response.text
        return dict(response.json())

    async def login(self, *, username: str, password: str = PASSWORD) -> dict[str, Any]:
        response = await self.client.post(
            "/api/v1/auth/login", json={"username": username, "password": password}
        )
        assert response.status_code == 200, response.text
        return dict(response.json())

    async def account(
        self,
        *,
        username: str = "alice",
        password: str = PASSWORD,
        full_name: str | None = None,
        admin: bool = False,
    ) -> Account:
        user = await self.register(username=username, password=password, full_name=full_name)
        if admin:
            await self.set_flags(user["id"], is_superuser=True)
        return Account(user, password, await self.login(username=username, password=password))

    async def set_flags(self, user_id: int, **values: bool) -> None:
        """Change a user row directly (test setup only, e.g. to make an administrator)."""
        async with self.app.state.engine.begin() as connection:
            await connection.execute(update(User).where(User.id == user_id).values(**values))


@pytest.fixture
def api(client: httpx.AsyncClient, app: FastAPI) -> Api:
    return Api(client, app)


ApiFactory = Callable[..., AbstractAsyncContextManager[Api]]


@pytest.fixture
def make_api(settings: Settings) -> ApiFactory:
    """An app built with some settings changed, e.g. `async with make_api(bcrypt_rounds=5)`."""

    @asynccontextmanager
    async def make(**overrides: Any) -> AsyncIterator[Api]:
        app = create_app(settings.model_copy(update=overrides))
        async with serving(app) as served:
            try:
                transport = httpx.ASGITransport(app=served)
                async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
                    yield Api(client, app)
            finally:
                await empty_tables(app.state.engine, Base.metadata)

    return make
