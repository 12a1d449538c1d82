"""Per-route request budgets: how many registrations, logins, refreshes and password changes
one address (or one account) may ask for per window, successful ones included.

They sit in front of the expensive work (bcrypt, a database write) that the gateway's general
per-address budget is far too generous for. Counted in Redis (the kit's fixed-window limiter,
shared by replicas; counted in-process while Redis is down).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping

from taskflow_kit.errors import TooManyRequests
from taskflow_kit.ratelimit import RateLimiter


class RouteBudgetExceeded(TooManyRequests):
    def __init__(self, *, retry_after: int) -> None:
        super().__init__("Too many requests of this kind; try again later", retry_after=retry_after)


def name_key(identifier: str) -> str:
    """A bounded key for a submitted username or email (no raw input in Redis)."""
    return hashlib.sha256(identifier.lower().encode("utf-8", "surrogatepass")).hexdigest()[:32]


class RouteBudgets:
    """`limits` maps a budget name (e.g. "login:address") to requests per `window` seconds."""

    def __init__(
        self, limiter: RateLimiter, *, enabled: bool, window: float, limits: Mapping[str, int]
    ) -> None:
        self.limiter = limiter
        self.enabled = enabled
        self.window = window
        self.limits = dict(limits)

    async def spend(self, budget: str, key: str) -> None:
        """Count one request against `budget` for `key`; 429 + `Retry-After` when spent."""
        if not self.enabled:
            return
        result = await self.limiter.hit(
            f"budget:{budget}:{key}", limit=self.limits[budget], window=self.window
        )
        if not result.allowed:
            raise RouteBudgetExceeded(retry_after=result.retry_after)
