from __future__ import annotations

import asyncio

from redis.asyncio import Redis
from taskflow_kit.ratelimit import RateLimiter
from taskflow_kit.redis_client import create_redis


async def test_limit_is_shared_across_limiter_instances(redis: Redis, key_prefix: str) -> None:
    first = RateLimiter(redis, prefix=key_prefix)
    second = RateLimiter(redis, prefix=key_prefix)
    results = await asyncio.gather(
        *[(first if i % 2 else second).hit("ip:1", limit=5, window=30) for i in range(8)]
    )
    assert sum(result.allowed for result in results) == 5
    denied = [result for result in results if not result.allowed]
    assert all(result.remaining == 0 and result.retry_after >= 1 for result in denied)
    assert not any(result.degraded for result in results)


async def test_window_expires(redis: Redis, key_prefix: str) -> None:
    limiter = RateLimiter(redis, prefix=key_prefix)
    assert (await limiter.hit("k", limit=1, window=0.2)).allowed
    assert not (await limiter.hit("k", limit=1, window=0.2)).allowed
    count, reset = await limiter.peek("k")
    assert count == 2
    assert 0 <= reset <= 0.2
    while (await limiter.peek("k"))[0]:
        await asyncio.sleep(0.05)
    assert (await limiter.hit("k", limit=1, window=0.2)).allowed


async def test_reset_clears_the_count(redis: Redis, key_prefix: str) -> None:
    limiter = RateLimiter(redis, prefix=key_prefix)
    await limiter.hit("acct", limit=1, window=60)
    await limiter.reset("acct")
    assert (await limiter.peek("acct"))[0] == 0


async def test_redis_down_falls_back_to_local_counting() -> None:
    dead = create_redis("redis://127.0.0.1:1/0", timeout=0.2)
    limiter = RateLimiter(dead, prefix="x:")
    results = [await limiter.hit("k", limit=2, window=60) for _ in range(3)]
    assert [result.allowed for result in results] == [True, True, False]
    assert all(result.degraded for result in results)
    assert limiter.degraded
    assert (await limiter.peek("k"))[0] == 3
    await dead.aclose()


async def test_add_counts_a_batch_in_one_window(redis: Redis, key_prefix: str) -> None:
    limiter = RateLimiter(redis, prefix=key_prefix)
    total, reset_after = await limiter.add("batch", 7, window=30)
    assert total == 7
    assert 29 < reset_after <= 30
    result = await limiter.hit("batch", limit=10, window=30, cost=3)
    assert (result.allowed, result.remaining) == (True, 0)
    assert not (await limiter.hit("batch", limit=10, window=30)).allowed


async def test_release_gives_hits_back_but_never_below_zero(redis: Redis, key_prefix: str) -> None:
    limiter = RateLimiter(redis, prefix=key_prefix)
    await limiter.hit("resv", limit=5, window=60, cost=2)
    await limiter.release("resv")
    assert (await limiter.peek("resv"))[0] == 1
    await limiter.release("resv", 5)
    assert (await limiter.peek("resv"))[0] == 0
    await limiter.release("never-hit")
    assert (await limiter.peek("never-hit"))[0] == 0
    assert await redis.exists(key_prefix + "never-hit") == 0
