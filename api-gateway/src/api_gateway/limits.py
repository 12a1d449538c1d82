"""Per-user and per-address rate limits in Redis, shared by every gateway replica.

Every proxied request counts against its client address; a request with a valid access token
also counts against its user. The tighter of the two decides and fills the `RateLimit-*`
headers.

A Redis round trip per request would cost about a quarter of the gateway's CPU, so counting is
batched while a key is far from its limit: the hit is allowed on the last total Redis returned
plus this process's unsent hits, and the unsent hits are added to Redis (INCRBY) every
`flush_interval` (every key's in one pipelined round trip) or once `max_unsent(limit)` have
gathered, whichever comes first. Every hit still reaches Redis, so the shared count is exact;
only the decision for a key with plenty of room left uses a slightly stale total. Once a key's
remaining budget is under `margin(limit)` (and always for small limits), each hit goes to Redis
before the decision, so limits are exact where it matters.

When Redis fails the limits are kept in this process with the kit's local fallback (fail open:
`/api/status` says `local-fallback`), and a breaker stops paying for a Redis timeout on every
request meanwhile.
"""

from __future__ import annotations

import asyncio
import enum
import math
import time
from dataclasses import dataclass

import structlog
from redis.asyncio import Redis
from redis.exceptions import RedisError
from taskflow_kit.background import stop_if_cancelled
from taskflow_kit.ratelimit import RateLimiter, RateLimitResult
from taskflow_kit.resilience import BreakerState, CircuitBreaker

logger = structlog.get_logger("api_gateway.limits")


class LimiterMode(enum.StrEnum):
    REDIS = "redis"
    LOCAL_FALLBACK = "local-fallback"
    DISABLED = "disabled"


def margin(limit: int) -> int:
    """Below this many remaining hits, every hit is checked in Redis before the decision."""
    return max(limit // 10, 50)


def max_unsent(limit: int) -> int:
    """At most this many hits are held back per key before one is decided in Redis again, so
    the other replicas' unsent hits (unseen here) stay well inside the margin."""
    return max(1, margin(limit) // 4)


@dataclass(frozen=True, slots=True)
class _Rule:
    """One limit and its two thresholds, worked out once (not per request)."""

    limit: int
    margin: int
    max_unsent: int

    @classmethod
    def of(cls, limit: int) -> _Rule:
        return cls(limit, margin(limit), max_unsent(limit))


@dataclass
class _Window:
    total: int  # the shared count as Redis last reported it
    pending: int  # hits allowed here and not yet added in Redis
    expires_at: float  # monotonic time at which the Redis window ends


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
            (b"ratelimit-limit", b"%d" % self.limit),
            (b"ratelimit-remaining", b"%d" % self.remaining),
            (b"ratelimit-reset", b"%d" % math.ceil(self.reset_after)),
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
        flush_interval: float = 0.2,
    ) -> None:
        self.enabled = enabled
        self.per_user = per_user
        self.per_ip = per_ip
        self._user_rule = _Rule.of(per_user)
        self._ip_rule = _Rule.of(per_ip)
        self.window = window_seconds
        self.flush_interval = flush_interval
        self._limiter = RateLimiter(redis, prefix=prefix)
        self._windows: dict[str, _Window] = {}
        self._redis_breaker = CircuitBreaker(failure_threshold=3, reset_timeout=5.0)
        self._redis_failed = False

    @property
    def mode(self) -> LimiterMode:
        if not self.enabled:
            return LimiterMode.DISABLED
        if self._redis_failed or self._redis_breaker.state is BreakerState.OPEN:
            return LimiterMode.LOCAL_FALLBACK
        return LimiterMode.REDIS

    def status(self) -> dict[str, object]:
        return {
            "mode": self.mode.value,
            "per_user": self.per_user,
            "per_ip": self.per_ip,
            "window_seconds": self.window,
        }

    async def check(self, *, client_ip: str, user_id: str | None) -> Decision | None:
        """Count one request; None when limits are off."""
        if not self.enabled:
            return None
        key = f"ip:{client_ip}"
        by_ip = self._held(key, self._ip_rule) or await self._hit(key, self._ip_rule)
        if user_id is None:
            return Decision(by_ip.allowed, by_ip.limit, by_ip.remaining, by_ip.reset_after)
        key = f"user:{user_id}"
        by_user = self._held(key, self._user_rule) or await self._hit(key, self._user_rule)
        # Report the limit closest to running out (or the one that refused).
        tightest = (
            by_user
            if (by_user.allowed, by_user.remaining) < (by_ip.allowed, by_ip.remaining)
            else by_ip
        )
        return Decision(
            allowed=by_ip.allowed and by_user.allowed,
            limit=tightest.limit,
            remaining=tightest.remaining,
            reset_after=tightest.reset_after,
        )

    def _held(self, key: str, rule: _Rule) -> RateLimitResult | None:
        """The decision for a key far from its limit, counted here and sent to Redis later (no
        await: the common case); None when Redis must decide (`_hit`)."""
        window = self._windows.get(key)
        if window is None or self._redis_failed:
            return None
        now = time.monotonic()
        if window.expires_at <= now:
            return None
        remaining = rule.limit - (window.total + window.pending + 1)
        if remaining < rule.margin or window.pending >= rule.max_unsent:
            return None
        window.pending += 1
        return RateLimitResult(
            allowed=True, limit=rule.limit, remaining=remaining, reset_after=window.expires_at - now
        )

    async def _hit(self, key: str, rule: _Rule) -> RateLimitResult:
        limit = rule.limit
        held = self._held(key, rule)
        if held is not None:
            return held
        now = time.monotonic()
        window = self._windows.get(key)
        if window is not None and window.expires_at <= now:
            window = None  # the Redis window is over (its unsent hits were flushed or lost)
        if window is None:
            window = self._windows[key] = _Window(total=0, pending=0, expires_at=now)
        # Close to the limit (or unknown): add this hit and the unsent ones, then decide.
        amount, window.pending = window.pending + 1, 0
        added = await self._send(key, amount)
        if added is None:
            self._windows.pop(key, None)
            return self._limiter.local_hit(key, limit=limit, window=self.window)
        total, reset_after = added
        window.total = total
        window.expires_at = time.monotonic() + reset_after
        return RateLimitResult(
            allowed=total <= limit,
            limit=limit,
            remaining=max(0, limit - total),
            reset_after=reset_after,
        )

    async def _send(self, key: str, amount: int) -> tuple[int, float] | None:
        """INCRBY in Redis: (new total, seconds to the window's end), or None if Redis failed."""
        added = await self._send_many({key: amount})
        return None if added is None else added.get(key)

    async def _send_many(self, amounts: dict[str, int]) -> dict[str, tuple[int, float]] | None:
        """INCRBY of every key in one Redis round trip: each key's (new total, seconds to the
        window's end), or None if Redis failed (the hits are then lost to Redis)."""
        if not self._redis_breaker.allow():
            return None
        try:
            if len(amounts) == 1:
                [(key, amount)] = amounts.items()
                added = {key: await self._limiter.add(key, amount, window=self.window)}
            else:
                added = await self._limiter.add_many(amounts, window=self.window)
        except (RedisError, OSError) as exc:
            if not self._redis_failed:
                logger.warning("rate_limit_redis_down", error=type(exc).__name__)
            self._redis_failed = True
            self._redis_breaker.record_failure()
            return None
        self._redis_failed = False
        self._redis_breaker.record_success()
        return added

    async def flush(self) -> None:
        """Add every key's unsent hits to Redis, all in one round trip; forget windows that are
        over."""
        now = time.monotonic()
        flushed: dict[str, _Window] = {}
        amounts: dict[str, int] = {}
        for key, window in list(self._windows.items()):
            if window.expires_at <= now and not window.pending:
                del self._windows[key]
                continue
            if window.pending:
                flushed[key] = window
                amounts[key], window.pending = window.pending, 0
        if not amounts:
            return
        added = await self._send_many(amounts)
        if not added:
            return
        now = time.monotonic()
        for key, (total, reset_after) in added.items():
            window = flushed[key]
            # A decision made meanwhile may have brought a newer total: keep the larger.
            same_window = window.expires_at > now
            window.total = max(window.total, total) if same_window else total
            window.expires_at = now + reset_after

    async def run_flusher(self) -> None:
        while True:
            await asyncio.sleep(self.flush_interval)
            if self._windows:
                try:
                    await self.flush()
                except Exception:  # the flusher must outlive any one failure
                    logger.exception("rate_limit_flush_failed")
                # A cancellation that lands inside a Redis command can come out of redis-py as a
                # timeout, which `flush` treats as Redis being down: asked to stop, stop anyway.
                stop_if_cancelled()
