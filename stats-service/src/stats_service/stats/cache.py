"""Statistics cache in Redis: a short-lived fresh copy and a long-lived last known good copy.

Redis is an optimisation here, never a dependency of an answer: every failure reads as a
miss, and after one failure Redis is skipped for a few seconds (so a hung Redis costs one
timeout, not one per request).
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from typing import Any

import structlog
from redis.asyncio import Redis
from redis.exceptions import RedisError
from taskflow_kit.resilience import CircuitBreaker

logger = structlog.get_logger("stats_service.cache")

# Bump when the cached shape changes, so old entries are simply never read again.
KEY_VERSION = "v1"


@dataclass(frozen=True, slots=True)
class CacheEntry:
    stored_at: dt.datetime
    value: Any  # JSON-compatible data, validated again by the reader


class StatsCache:
    """Two copies per key: `fresh` (TTL `ttl`) and `last-good` (TTL `last_good_ttl`)."""

    def __init__(
        self,
        redis: Redis,
        *,
        prefix: str,
        ttl: int,
        last_good_ttl: int,
        breaker: CircuitBreaker | None = None,
    ) -> None:
        self.redis = redis
        self.prefix = f"{prefix}stats:{KEY_VERSION}:"
        self.ttl = ttl
        self.last_good_ttl = last_good_ttl
        self.breaker = breaker or CircuitBreaker(failure_threshold=1, reset_timeout=5.0)

    def fresh_key(self, key: str) -> str:
        return f"{self.prefix}fresh:{key}"

    def last_good_key(self, key: str) -> str:
        return f"{self.prefix}last-good:{key}"

    async def fresh(self, key: str) -> CacheEntry | None:
        return await self._read(self.fresh_key(key))

    async def last_good(self, key: str) -> CacheEntry | None:
        return await self._read(self.last_good_key(key))

    async def store(self, key: str, value: Any, *, now: dt.datetime) -> None:
        """Keep `value` as both the fresh and the last known good copy."""
        if not self.breaker.allow():
            return
        payload = json.dumps({"stored_at": now.isoformat(), "value": value})
        try:
            async with self.redis.pipeline(transaction=False) as pipe:
                pipe.set(self.fresh_key(key), payload, ex=self.ttl)
                pipe.set(self.last_good_key(key), payload, ex=self.last_good_ttl)
                await pipe.execute()
        except (RedisError, OSError) as exc:
            self._failed("cache_write_failed", exc)
            return
        self.breaker.record_success()

    async def ping(self) -> None:
        await self.redis.ping()

    async def _read(self, full_key: str) -> CacheEntry | None:
        if not self.breaker.allow():
            return None
        try:
            raw = await self.redis.get(full_key)
        except (RedisError, OSError) as exc:
            self._failed("cache_read_failed", exc)
            return None
        self.breaker.record_success()
        if raw is None:
            return None
        try:
            envelope = json.loads(raw)
            return CacheEntry(
                stored_at=dt.datetime.fromisoformat(envelope["stored_at"]),
                value=envelope["value"],
            )
        except (ValueError, KeyError, TypeError):
            logger.warning("cache_entry_unreadable", key=full_key)
            return None

    def _failed(self, event: str, exc: Exception) -> None:
        self.breaker.record_failure()
        logger.warning(event, error_type=type(exc).__name__)
