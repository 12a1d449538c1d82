"""Per-user and per-address rate limits in Redis, shared by every gateway replica.

Every proxied request counts against its client address; a request with a valid access token
also counts against its user. The tighter of the two decides and fills the `RateLimit-*`
headers. When Redis fails the limits are kept in this process (fail open, `/api/status` says
`local-fallback`), and a breaker stops paying a Redis timeout on every request meanwhile.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass

from redis.asyncio import Redis
from taskflow_kit.ratelimit import RateLimiter, RateLimitResult
from taskflow_kit.resilience import BreakerState, CircuitBreaker


class LimiterMode(enum.StrEnum):
    REDIS = "redis"
    LOCAL_FALLBACK = "local-fallback"
    DISABLED = "disabled"


class _Limiter(RateLimiter):
    """The kit's limiter, plus counting in this process only while Redis is known down."""

    def local_hits(self, limits: list[tuple[str, int]], *, window: float) -> list[RateLimitResult]:
        """Count in this process only (while Redis is down)."""
        results = []
        for key, limit in limits:
            count, ttl_ms = self._local_hit(key, window, 1)
            results.append(_result(count, ttl_ms, limit, degraded=True))
        return results

    async def hits(self, limits: list[tuple[str, int]], *, window: float) -> list[RateLimitResult]:
        """One hit on each key (a pipeline would cost more here: redis-py checks its scripts
        with an extra SCRIPT EXISTS on every pipelined call)."""
        return [await self.hit(key, limit=limit, window=window) for key, limit in limits]


def _result(count: int, ttl_ms: int, limit: int, *, degraded: bool) -> RateLimitResult:
    return RateLimitResult(
        allowed=count <= limit,
        limit=limit,
        remaining=max(0, limit - count),
        reset_after=ttl_ms / 1000,
        degraded=degraded,
    )


@dataclass(frozen=True, slots=True)
class Decision:
    allowed: bool
    limit: int
    remaining: int
    reset_after: float

    @property
    def retry_after(self) -> int:
        return max(1, math.ceil(self.reset_after))

    def headers(self) -> list[tuple[bytes, bytes]]:
        return [
            (b"ratelimit-limit", str(self.limit).encode()),
            (b"ratelimit-remaining", str(self.remaining).encode()),
            (b"ratelimit-reset", str(math.ceil(self.reset_after)).encode()),
        ]


class GatewayRateLimits:
    def __init__(
        self,
        redis: Redis,
        *,
        prefix: str,
        per_user: int,
        per_ip: int,
        window_seconds: float,
        enabled: bool = True,
    ) -> None:
        self.enabled = enabled
        self.per_user = per_user
        self.per_ip = per_ip
        self.window = window_seconds
        self._limiter = _Limiter(redis, prefix=prefix)
        self._redis_breaker = CircuitBreaker(failure_threshold=3, reset_timeout=5.0)

    @property
    def mode(self) -> LimiterMode:
        if not self.enabled:
            return LimiterMode.DISABLED
        if self._limiter.degraded or self._redis_breaker.state is BreakerState.OPEN:
            return LimiterMode.LOCAL_FALLBACK
        return LimiterMode.REDIS

    async def check(self, *, client_ip: str, user_id: str | None) -> Decision | None:
        """Count one request; None when limits are off."""
        if not self.enabled:
            return None
        limits = [(f"ip:{client_ip}", self.per_ip)]
        if user_id is not None:
            limits.append((f"user:{user_id}", self.per_user))
        if self._redis_breaker.allow():
            results = await self._limiter.hits(limits, window=self.window)
            if results[0].degraded:
                self._redis_breaker.record_failure()
            else:
                self._redis_breaker.record_success()
        else:
            results = self._limiter.local_hits(limits, window=self.window)
        allowed = all(result.allowed for result in results)
        # Report the limit closest to running out (or the one that refused).
        tightest = min(results, key=lambda result: (result.allowed, result.remaining))
        return Decision(
            allowed=allowed,
            limit=tightest.limit,
            remaining=tightest.remaining,
            reset_after=tightest.reset_after,
        )
