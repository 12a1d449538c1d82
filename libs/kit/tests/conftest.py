from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest
from event_fixtures import ThrowawayRedis, reset_tables
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncEngine
from taskflow_kit.redis_client import create_redis
from taskflow_kit.testing import test_redis_url
from taskflow_kit.tokens import TokenConfig

SECRET = "kit-tests-secret-0123456789abcdef0123"


@pytest.fixture
def token_config() -> TokenConfig:
    return TokenConfig(secret=SECRET, issuer="taskflow", audience="taskflow")


@pytest.fixture
async def redis() -> AsyncIterator[Redis]:
    client = create_redis(test_redis_url())
    yield client
    await client.aclose()


@pytest.fixture
def key_prefix() -> str:
    return f"kit-test:{uuid.uuid4().hex}:"


@pytest.fixture
async def event_prefix(redis: Redis) -> AsyncIterator[str]:
    """A key prefix of this test's own on the shared Redis; its keys are deleted afterwards."""
    prefix = f"kit-events:{uuid.uuid4().hex}:"
    yield prefix
    keys = [key async for key in redis.scan_iter(match=f"{prefix}*", count=1000)]
    if keys:
        await redis.delete(*keys)


@pytest.fixture
async def engine(database: tuple[str, AsyncEngine]) -> AsyncEngine:
    """The engine of the module's `database` fixture (its outbox tables), emptied first."""
    await reset_tables(database[1])
    return database[1]


@pytest.fixture
async def throwaway_redis() -> AsyncIterator[ThrowawayRedis]:
    """A Redis of its own on another port, for tests that stop it or lose its data."""
    server = ThrowawayRedis()
    server.start()
    yield server
    server.remove()
