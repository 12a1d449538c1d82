from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis
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
