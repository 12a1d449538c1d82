"""The batched Redis counting behind the rate limits, against a real Redis."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator

import pytest
from api_gateway.limits import GatewayRateLimits, LimiterMode, margin
from conftest import SESSION_PREFIX
from redis.asyncio import Redis
from taskflow_kit.redis_client import create_redis
from taskflow_kit.testing import test_redis_url


@pytest.fixture
async def redis() -> AsyncIterator[Redis]:
    client = create_redis(test_redis_url())
    yield client
    await client.aclose()


def limits(redis: Redis, prefix: str, **options: int) -> GatewayRateLimits:
    return GatewayRateLimits(
        redis,
        prefix=prefix,
        per_user=options.get("per_user", 10**6),
        per_ip=options.get("per_ip", 10**6),
        window_seconds=60,
    )


async def test_far_from_the_limit_hits_are_batched_but_all_reach_redis(redis: Redis) -> None:
    prefix = f"{SESSION_PREFIX}{uuid.uuid4().hex[:8]}:"
    limiter = limits(redis, prefix, per_ip=10_000)
    remaining = []
    for _ in range(500):
        decision = await limiter.check(client_ip="10.0.0.1", user_id=None)
        assert decision is not None
        assert decision.allowed
        remaining.append(decision.remaining)
    assert remaining == list(range(9_999, 9_499, -1))
    # Most hits were decided locally and are still to be added by the flusher.
    assert int(await redis.get(f"{prefix}ip:10.0.0.1")) < 500
    await limiter.flush()
    assert int(await redis.get(f"{prefix}ip:10.0.0.1")) == 500
    assert limiter.mode is LimiterMode.REDIS


async def test_near_the_limit_every_hit_is_decided_in_redis(redis: Redis) -> None:
    prefix = f"{SESSION_PREFIX}{uuid.uuid4().hex[:8]}:"
    limit = 150
    assert margin(limit) == 50
    first = limits(redis, prefix, per_user=limit)
    second = limits(redis, prefix, per_user=limit)  # another gateway process, same Redis
    allowed = 0
    for index in range(200):
        limiter = first if index % 2 else second
        decision = await limiter.check(client_ip=f"10.0.0.{index % 2}", user_id="42")
        assert decision is not None
        allowed += decision.allowed
    # Each process holds back at most max_unsent hits, far inside the margin, so the shared
    # limit holds exactly even without the periodic flush.
    assert allowed == limit
    await first.flush()
    await second.flush()
    assert int(await redis.get(f"{prefix}user:42")) == 200


async def test_small_limits_are_exact_across_processes(redis: Redis) -> None:
    prefix = f"{SESSION_PREFIX}{uuid.uuid4().hex[:8]}:"
    first = limits(redis, prefix, per_ip=5)
    second = limits(redis, prefix, per_ip=5)
    decisions = []
    for index in range(8):
        limiter = first if index % 2 else second
        decision = await limiter.check(client_ip="10.0.0.7", user_id=None)
        assert decision is not None
        decisions.append(decision.allowed)
    assert decisions == [True] * 5 + [False] * 3


async def test_flush_adds_every_key_in_one_round_trip(redis: Redis) -> None:
    prefix = f"{SESSION_PREFIX}{uuid.uuid4().hex[:8]}:"
    limiter = limits(redis, prefix)
    users = [str(index) for index in range(30)]
    for _ in range(3):
        for user in users:
            decision = await limiter.check(client_ip="10.0.0.9", user_id=user)
            assert decision is not None
            assert decision.allowed
    pipelines = 0
    execute = type(redis.pipeline()).execute

    async def counted(pipe: object, raise_on_error: bool = True) -> list[object]:
        nonlocal pipelines
        pipelines += 1
        return await execute(pipe, raise_on_error)  # type: ignore[arg-type]

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(type(redis.pipeline()), "execute", counted)
        await limiter.flush()
    assert pipelines == 1
    for user in users:
        assert await redis.get(f"{prefix}user:{user}") == "3"
    assert await redis.get(f"{prefix}ip:10.0.0.9") == "90"
    # Nothing left to send: the next flush makes no round trip.
    assert sum(window.pending for window in limiter._windows.values()) == 0


async def test_the_flusher_stops_when_cancelled_mid_flush_even_if_the_cancel_is_swallowed(
    redis: Redis,
) -> None:
    """redis-py can turn a cancellation inside a command into a timeout, which `flush` takes
    for Redis being down; the gateway's shutdown waits for the flusher, so it must stop."""
    limiter = limits(redis, f"{SESSION_PREFIX}{uuid.uuid4().hex[:8]}:", per_ip=1000)
    limiter.flush_interval = 0.001
    await limiter.check(client_ip="10.0.0.1", user_id=None)
    in_flush = asyncio.Event()

    async def flush_swallowing_the_cancel() -> None:
        in_flush.set()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.sleep(10)

    limiter.flush = flush_swallowing_the_cancel  # type: ignore[method-assign]
    flusher = asyncio.create_task(limiter.run_flusher())
    await asyncio.wait_for(in_flush.wait(), 5)
    flusher.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(flusher, 5)
