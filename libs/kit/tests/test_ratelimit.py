from __future__ import annotations

import asyncio

import pytest
from redis.asyncio import Redis
from redis.exceptions import RedisError
from taskflow_kit.ratelimit import ADD_MANY_CHUNK, RateLimiter
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


async def test_add_many_counts_every_key_in_one_call(redis: Redis, key_prefix: str) -> None:
    limiter = RateLimiter(redis, prefix=key_prefix)
    await limiter.add("a", 2, window=30)
    added = await limiter.add_many({"a": 3, "b": 5, "c": 0}, window=30)
    assert set(added) == {"a", "b"}  # nothing to add for "c": no command, no key
    assert added["a"][0] == 5
    assert added["b"][0] == 5
    assert all(29 < reset_after <= 30 for _, reset_after in added.values())
    assert await redis.exists(key_prefix + "c") == 0
    assert (await limiter.peek("a"))[0] == 5


async def test_a_key_that_is_not_a_counter_is_refused_and_hit_falls_back(
    redis: Redis, key_prefix: str
) -> None:
    limiter = RateLimiter(redis, prefix=key_prefix)
    await redis.set(key_prefix + "text", "abc")
    with pytest.raises(RedisError):
        await limiter.add("text", 1, window=30)
    assert await redis.get(key_prefix + "text") == "abc"
    assert (await limiter.hit("text", limit=5, window=30)).degraded


async def test_add_many_leaves_out_a_key_redis_refuses_and_counts_the_others(
    redis: Redis, key_prefix: str
) -> None:
    limiter = RateLimiter(redis, prefix=key_prefix)
    await redis.set(key_prefix + "not-a-counter", "abc")
    added = await limiter.add_many({"before": 2, "not-a-counter": 1, "after": 3}, window=30)
    assert {key: total for key, (total, _) in added.items()} == {"before": 2, "after": 3}
    assert await redis.get(key_prefix + "not-a-counter") == "abc"
    assert 29_000 < await redis.pttl(key_prefix + "after") <= 30_000


async def test_add_many_splits_a_large_batch_and_counts_every_key(
    redis: Redis, key_prefix: str
) -> None:
    limiter = RateLimiter(redis, prefix=key_prefix)
    amounts = {f"k{index}": index % 7 + 1 for index in range(ADD_MANY_CHUNK * 2 + 3)}
    await limiter.add("k5", 10, window=30)
    added = await limiter.add_many(amounts, window=30)
    expected = {key: amount + (10 if key == "k5" else 0) for key, amount in amounts.items()}
    assert {key: total for key, (total, _) in added.items()} == expected
    assert await redis.get(key_prefix + f"k{ADD_MANY_CHUNK * 2 + 2}") == str(
        (ADD_MANY_CHUNK * 2 + 2) % 7 + 1
    )


async def test_add_many_loads_the_script_once_on_a_redis_that_lacks_it() -> None:
    # A Redis of our own, fresh: the add script is unknown to it, so the first pipeline gets
    # NOSCRIPT for every key, counts nothing, loads the script and sends them again.
    from event_fixtures import ThrowawayRedis

    server = ThrowawayRedis()
    server.start()
    client = create_redis(server.url)
    try:
        limiter = RateLimiter(client, prefix="x:")
        added = await limiter.add_many({"k1": 4, "k2": 1}, window=30)
        assert {key: total for key, (total, _) in added.items()} == {"k1": 4, "k2": 1}
        assert await client.get("x:k1") == "4"
        assert await client.get("x:k2") == "1"
    finally:
        await client.aclose()
        server.remove()


async def test_add_many_raises_when_redis_is_down() -> None:
    dead = create_redis("redis://127.0.0.1:1/0", timeout=0.2)
    limiter = RateLimiter(dead, prefix="x:")
    try:
        with pytest.raises((OSError, RedisError)):
            await limiter.add_many({"k": 1}, window=30)
    finally:
        await dead.aclose()
