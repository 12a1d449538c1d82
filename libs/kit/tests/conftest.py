from __future__ import annotations

import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from redis.asyncio import Redis
from taskflow_kit.redis_client import create_redis
from taskflow_kit.testing import test_redis_url
from taskflow_kit.tokens import TokenConfig

SECRET = "kit-tests-secret-0123456789abcdef0123"

# The event tests import their helpers (event_fixtures.py) from this folder.
sys.path.insert(0, str(Path(__file__).resolve().parent))


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
