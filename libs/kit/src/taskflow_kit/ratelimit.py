"""Fixed-window rate limiting in Redis (shared by every replica), with a local fallback."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Mapping
from dataclasses import dataclass

from redis.asyncio import Redis
from redis.exceptions import NoScriptError, RedisError, ResponseError

# Add hits (INCRBY) and start the window's expiry with the first of them, atomically (works on
# Redis 6.2 and 7), for each key of one call (ARGV[1] the window, ARGV[i + 1] the hits of
# KEYS[i]): a flat list of each key's count and ttl, (-1, -1) for a key Redis refused (not an
# integer). Adding a batch in one call lets a caller count hits it held back, and a flush send
# every key in one command (redis-py's cost per pipelined command is most of a flush's).
_ADD_SCRIPT = """
local out = {}
for i, key in ipairs(KEYS) do
  local amount = tonumber(ARGV[i + 1])
  local count = redis.pcall('INCRBY', key, amount)
  if type(count) ~= 'number' then
    out[2 * i - 1] = -1
    out[2 * i] = -1
  else
    if count == amount then redis.call('PEXPIRE', key, ARGV[1]) end
    local ttl = redis.call('PTTL', key)
    if ttl < 0 then redis.call('PEXPIRE', key, ARGV[1]); ttl = tonumber(ARGV[1]) end
    out[2 * i - 1] = count
    out[2 * i] = ttl
  end
end
return out
"""
# Keys per call of the batch script: a script blocks Redis while it runs (≈ 1 µs a key).
ADD_MANY_CHUNK = 500

# Give back hits taken earlier (a reservation that turned out not to count), never below zero
# and never creating a key.
_RELEASE_SCRIPT = """
local count = tonumber(redis.call('GET', KEYS[1]) or '0')
if count <= 0 then return 0 end
return redis.call('DECRBY', KEYS[1], math.min(count, tonumber(ARGV[1])))
"""


def retry_after_seconds(reset_after: float) -> int:
    """A `Retry-After` value for a window that ends in `reset_after` seconds: whole seconds,
    rounded up (to within a millisecond), at least 1."""
    return max(1, int(reset_after + 0.999))


@dataclass(frozen=True, slots=True)
class RateLimitResult:
    allowed: bool
    limit: int
    remaining: int
    reset_after: float
    degraded: bool = False
    """Counted in this process only, because Redis failed (fail open to a local limit)."""

    @property
    def retry_after(self) -> int:
        return retry_after_seconds(self.reset_after)


class RateLimiter:
    """Counts hits per key within a window. If Redis fails, counts in this process instead
    (fail open to a local limit) and marks the result `degraded`."""

    def __init__(self, redis: Redis, *, prefix: str = "taskflow:rl:") -> None:
        self.redis = redis
        self.prefix = prefix
        self._add = redis.register_script(_ADD_SCRIPT)
        self._release = redis.register_script(_RELEASE_SCRIPT)
        self._local: dict[str, tuple[int, float]] = {}

    async def add(self, key: str, amount: int, *, window: float) -> tuple[int, float]:
        """Add `amount` hits to `key` in Redis: (total in this window, seconds until it ends).

        Raises `RedisError`/`OSError` when Redis fails or refuses the key; `hit` turns that
        into the fallback.
        """
        window_ms = max(1, int(window * 1000))
        count, ttl_ms = await self._add(keys=[self.prefix + key], args=[window_ms, amount])
        if int(count) < 0:
            raise ResponseError(f"{self.prefix + key} is not a counter")
        return int(count), int(ttl_ms) / 1000

    async def add_many(
        self, amounts: Mapping[str, int], *, window: float
    ) -> dict[str, tuple[int, float]]:
        """`add` for many keys in one round trip: one call of the batch script per
        `ADD_MANY_CHUNK` keys, pipelined.

        Returns each key's (total in this window, seconds until it ends); a key Redis refused
        (not a counter) is left out, its hits lost as with a failed `add`. Raises
        `RedisError`/`OSError` when Redis fails. The script is loaded (one more round trip)
        only when Redis does not know it yet, unlike a pipelined `Script` call, which asks
        `SCRIPT EXISTS` on every execute.
        """
        window_ms = max(1, int(window * 1000))
        todo = [(key, amount) for key, amount in amounts.items() if amount > 0]
        chunks = [todo[i : i + ADD_MANY_CHUNK] for i in range(0, len(todo), ADD_MANY_CHUNK)]
        added: dict[str, tuple[int, float]] = {}
        for attempt in range(2):
            if not chunks:
                break
            async with self.redis.pipeline(transaction=False) as pipe:
                for chunk in chunks:
                    pipe.evalsha(
                        self._add.sha,
                        len(chunk),
                        *(self.prefix + key for key, _ in chunk),
                        window_ms,
                        *(amount for _, amount in chunk),
                    )
                replies = await pipe.execute(raise_on_error=False)
            unknown = []
            for chunk, reply in zip(chunks, replies, strict=True):
                if isinstance(reply, NoScriptError):
                    unknown.append(chunk)  # not run: nothing was counted yet
                elif not isinstance(reply, BaseException):
                    for index, (key, _) in enumerate(chunk):
                        count, ttl_ms = int(reply[2 * index]), int(reply[2 * index + 1])
                        if count >= 0:
                            added[key] = count, ttl_ms / 1000
            if unknown and attempt == 0:
                await self.redis.script_load(_ADD_SCRIPT)
            chunks = unknown
        return added

    async def hit(self, key: str, *, limit: int, window: float, cost: int = 1) -> RateLimitResult:
        try:
            count, reset_after = await self.add(key, cost, window=window)
        except (RedisError, OSError):
            return self.local_hit(key, limit=limit, window=window, cost=cost)
        return RateLimitResult(
            allowed=count <= limit,
            limit=limit,
            remaining=max(0, limit - count),
            reset_after=reset_after,
        )

    def local_hit(self, key: str, *, limit: int, window: float, cost: int = 1) -> RateLimitResult:
        """Count in this process only (while Redis is unavailable): fail open to a local limit."""
        count, ttl_ms = self._local_hit(key, window, cost)
        return RateLimitResult(
            allowed=count <= limit,
            limit=limit,
            remaining=max(0, limit - count),
            reset_after=ttl_ms / 1000,
            degraded=True,
        )

    async def peek(self, key: str) -> tuple[int, float]:
        """Hits so far in the current window and seconds until it resets."""
        try:
            async with self.redis.pipeline(transaction=False) as pipe:
                pipe.get(self.prefix + key)
                pipe.pttl(self.prefix + key)
                raw, ttl_ms = await pipe.execute()
            return int(raw or 0), max(0, ttl_ms) / 1000
        except (RedisError, OSError):
            count, expires = self._local.get(key, (0, 0.0))
            remaining = expires - time.monotonic()
            return (count, remaining) if remaining > 0 else (0, 0.0)

    async def release(self, key: str, amount: int = 1) -> None:
        """Give back `amount` hits of `key` (hits reserved with `hit` that should not count)."""
        count, expires = self._local.get(key, (0, 0.0))
        if count > 0:
            self._local[key] = (max(0, count - amount), expires)
        # If Redis fails the hit stays counted there until its window expires.
        with contextlib.suppress(RedisError, OSError):
            await self._release(keys=[self.prefix + key], args=[amount])

    async def reset(self, key: str) -> None:
        self._local.pop(key, None)
        with contextlib.suppress(RedisError, OSError):  # else Redis' window expires on its own
            await self.redis.delete(self.prefix + key)

    def _local_hit(self, key: str, window: float, cost: int) -> tuple[int, int]:
        now = time.monotonic()
        count, expires = self._local.get(key, (0, 0.0))
        if expires <= now:
            count, expires = 0, now + window
        count += cost
        self._local[key] = (count, expires)
        if len(self._local) > 100_000:  # bound memory while Redis is away
            self._local = {k: v for k, v in self._local.items() if v[1] > now}
        return count, int((expires - now) * 1000)
