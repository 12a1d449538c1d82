"""Statistics cache in Redis: a short-lived fresh copy and a long-lived last known good copy.

Redis is an optimisation here, never a dependency of an answer: every failure reads as a
miss, and after one failure Redis is skipped for a few seconds (so a hung Redis costs one
timeout, not one per request).
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterable
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
    generation: str = "0"
    # task-service's ETag of the aggregates the value was computed from (None: it sent none).
    tag: str | None = None


@dataclass(frozen=True, slots=True)
class Lookup:
    """A usable fresh entry (or None), the generation a newly computed value belongs to, and
    the fresh copy held whether or not it is current (`held`): one with a `tag` can be
    revalidated with task-service instead of computed again."""

    entry: CacheEntry | None
    generation: str
    held: CacheEntry | None = None


def scope_of(key: str) -> str:
    """The invalidation scope of a cache key: `user:<id>` for a user's views, else `system`."""
    parts = key.split(":")
    return f"user:{parts[1]}" if parts[0] == "user" and len(parts) > 1 else "system"


def caught_up(results: list[Any], group: str) -> bool:
    """From `XINFO GROUPS` and `XINFO STREAM` answers: has `group` handled every entry?"""
    groups, stream = results
    if isinstance(stream, Exception):
        return True  # no stream yet: nothing has happened that could make an entry stale
    if isinstance(groups, Exception):
        return False
    info = next((g for g in groups if str(g.get("name")) == group), None)
    if info is None or int(info.get("pending") or 0) > 0:
        return False
    if info.get("lag") is not None:  # Redis 7
        return int(info["lag"]) == 0
    return str(info.get("last-delivered-id")) == str(stream.get("last-generated-id"))


class StatsCache:
    """Two copies per key: `fresh` (TTL `ttl`) and `last-good` (TTL `last_good_ttl`).

    A fresh copy is served as it is only while it is current: `task.*` events bump the
    generation of every user they touch (`invalidate`), and a copy computed under an older
    generation is never served so; nor is any copy while the stats consumer group has events
    not yet handled. A copy that carries task-service's ETag is revalidated with task-service
    instead (`StatsService`): that, not the events, is what makes a read right after a write
    see it, since a write no longer waits for its event to reach Redis (docs/events.md)."""

    def __init__(
        self,
        redis: Redis,
        *,
        prefix: str,
        ttl: int,
        last_good_ttl: int,
        breaker: CircuitBreaker | None = None,
        events_stream: str | None = None,
        events_group: str = "stats-service",
    ) -> None:
        self.redis = redis
        self.events_stream = events_stream
        self.events_group = events_group
        self.prefix = f"{prefix}stats:{KEY_VERSION}:"
        self.ttl = ttl
        self.last_good_ttl = last_good_ttl
        self.breaker = breaker or CircuitBreaker(failure_threshold=1, reset_timeout=5.0)

    def fresh_key(self, key: str) -> str:
        return f"{self.prefix}fresh:{key}"

    def last_good_key(self, key: str) -> str:
        return f"{self.prefix}last-good:{key}"

    def generation_key(self, scope: str) -> str:
        return f"{self.prefix}gen:{scope}"

    async def lookup(self, key: str) -> Lookup:
        """The fresh copy if it is current: the copy and its scope's generation in one round
        trip. The consumer group's progress (two XINFO answers, a second round trip) is read
        only for a copy without task-service's tag: a tagged copy is revalidated with
        task-service (`StatsService`), which is exact whatever the events' progress, so
        reading it would cost every `/stats/` read Redis work for an answer nobody uses."""
        if not self.breaker.allow():
            return Lookup(None, "0")
        try:
            async with self.redis.pipeline(transaction=False) as pipe:
                pipe.get(self.fresh_key(key))
                pipe.get(self.generation_key(scope_of(key)))
                raw, generation = await pipe.execute(raise_on_error=False)
        except (RedisError, OSError) as exc:
            self._failed("cache_read_failed", exc)
            return Lookup(None, "0")
        if isinstance(raw, Exception) or isinstance(generation, Exception):
            self._failed("cache_read_failed", raw if isinstance(raw, Exception) else generation)
            return Lookup(None, "0")
        self.breaker.record_success()
        generation = str(generation or "0")
        entry = self._decode(raw, self.fresh_key(key))
        if entry is None or entry.generation != generation:
            return Lookup(None, generation, entry)
        if entry.tag is None and not await self._caught_up():
            return Lookup(None, generation, entry)
        return Lookup(entry, generation, entry)

    async def _caught_up(self) -> bool:
        """Whether the stats consumer group has handled every event (False when unknown)."""
        if self.events_stream is None:
            return True
        try:
            async with self.redis.pipeline(transaction=False) as pipe:
                pipe.xinfo_groups(self.events_stream)
                pipe.xinfo_stream(self.events_stream)
                results = await pipe.execute(raise_on_error=False)
        except (RedisError, OSError) as exc:
            self._failed("cache_read_failed", exc)
            return False
        return caught_up(results, self.events_group)

    async def invalidate(self, user_ids: Iterable[int]) -> None:
        """Make the cached figures of these users (and the system overview) stale."""
        async with self.redis.pipeline(transaction=True) as pipe:
            for scope in [*(f"user:{user_id}" for user_id in set(user_ids)), "system"]:
                pipe.incr(self.generation_key(scope))
                pipe.expire(self.generation_key(scope), self.last_good_ttl)
            await pipe.execute()

    async def last_good(self, key: str) -> CacheEntry | None:
        return await self._read(self.last_good_key(key))

    async def store(
        self,
        key: str,
        value: Any,
        *,
        now: dt.datetime,
        generation: str = "0",
        tag: str | None = None,
    ) -> None:
        """Keep `value` as both the fresh and the last known good copy; `generation` is the
        one read before computing it (an invalidation since then makes this copy unusable),
        `tag` task-service's ETag of the aggregates it came from."""
        if not self.breaker.allow():
            return
        payload = json.dumps(
            {"stored_at": now.isoformat(), "value": value, "generation": generation, "tag": tag}
        )
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
        return self._decode(raw, full_key)

    @staticmethod
    def _decode(raw: Any, full_key: str) -> CacheEntry | None:
        if raw is None:
            return None
        try:
            envelope = json.loads(raw)
            return CacheEntry(
                stored_at=dt.datetime.fromisoformat(envelope["stored_at"]),
                value=envelope["value"],
                generation=str(envelope.get("generation", "0")),
                tag=envelope.get("tag"),
            )
        except (ValueError, KeyError, TypeError):
            logger.warning("cache_entry_unreadable", key=full_key)
            return None

    def _failed(self, event: str, exc: Exception) -> None:
        self.breaker.record_failure()
        logger.warning(event, error_type=type(exc).__name__)
