"""Redis client construction with short timeouts, so a Redis outage degrades instead of hanging."""

from __future__ import annotations

from redis.asyncio import Redis


def create_redis(url: str, *, timeout: float = 1.0) -> Redis:
    return Redis.from_url(
        url,
        decode_responses=True,
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
        health_check_interval=30,
    )


async def ping_redis(redis: Redis) -> None:
    await redis.ping()
