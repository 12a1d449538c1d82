"""Redis client construction with short timeouts, so a Redis outage degrades instead of hanging."""

from __future__ import annotations

from contextlib import AsyncExitStack

from redis.asyncio import Redis


def create_redis(url: str, *, timeout: float = 1.0) -> Redis:
    return Redis.from_url(
        url,
        decode_responses=True,
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
        health_check_interval=30,
    )


# Blocking stream reads (XREAD/XREADGROUP BLOCK) wait up to this long; the socket timeout of
# the client doing them must be longer.
STREAM_BLOCK_SECONDS = 1.0


def create_stream_redis(url: str) -> Redis:
    """A client for blocking stream reads: its socket timeout outlasts `STREAM_BLOCK_SECONDS`
    (a dead connection is still noticed within a few seconds)."""
    return Redis.from_url(
        url,
        decode_responses=True,
        socket_timeout=STREAM_BLOCK_SECONDS + 4.0,
        socket_connect_timeout=1.0,
        health_check_interval=30,
    )


def open_redis(stack: AsyncExitStack, url: str, *, timeout: float = 1.0) -> tuple[Redis, Redis]:
    """A service's two clients, closed when `stack` closes: commands (`create_redis`, each
    bounded by `timeout` seconds) and blocking stream reads (`create_stream_redis`)."""
    redis = create_redis(url, timeout=timeout)
    stack.push_async_callback(redis.aclose)
    stream_redis = create_stream_redis(url)
    stack.push_async_callback(stream_redis.aclose)
    return redis, stream_redis


async def ping_redis(redis: Redis) -> None:
    await redis.ping()
