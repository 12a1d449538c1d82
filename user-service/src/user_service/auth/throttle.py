"""Failed-login throttling per account and per client address (Redis, shared by replicas).

Only failures are counted: a team behind one NAT, or a load test, logging in successfully is
never slowed down. A success resets its account's counter, not the address's (otherwise one
valid account would let an address reset its budget for guessing others).

A login *reserves* its attempt (an atomic increment in Redis) before the password is verified,
and gives it back when the password was right: N parallel guesses cannot all pass a check
made before any of them was counted. A refused attempt gives its reservations back too, so the
counters hold the attempts that were verified (or are being verified).
"""

from __future__ import annotations

import hashlib

from starlette.requests import Request
from taskflow_kit.ratelimit import RateLimiter, retry_after_seconds

from user_service.auth.errors import TooManyLoginFailures
from user_service.users.models import User


def client_address(request: Request, *, trust_forwarded_for: bool, proxy_hops: int = 1) -> str:
    """The caller's address, as the limits count it.

    Behind the gateway the socket peer is the gateway, so the address comes from
    X-Forwarded-For. Each proxy *appends* the address it saw, so only the last `proxy_hops`
    entries were written by proxies we trust; anything left of them is whatever the client
    sent and can be forged. The client is therefore the `proxy_hops`-th entry from the right.
    """
    if trust_forwarded_for:
        hops = [hop.strip() for hop in request.headers.get("x-forwarded-for", "").split(",")]
        hops = [hop for hop in hops if hop]
        if hops:
            return hops[-min(proxy_hops, len(hops))][:64]
    return request.client.host if request.client else "unknown"


def account_key(identifier: str, user: User | None) -> str:
    """Count by user id when the account exists (so email and username share one budget), else
    by the submitted name (hashed: bounded key length, no raw input in Redis)."""
    if user is not None:
        return f"user:{user.id}"
    digest = hashlib.sha256(identifier.lower().encode("utf-8", "surrogatepass")).hexdigest()
    return f"name:{digest[:32]}"


class LoginThrottle:
    def __init__(
        self,
        limiter: RateLimiter,
        *,
        per_account: int,
        per_address: int,
        window_seconds: float,
    ) -> None:
        self.limiter = limiter
        self.per_account = per_account
        self.per_address = per_address
        self.window = window_seconds

    async def _check(self, key: str, limit: int) -> None:
        count, reset_after = await self.limiter.peek(key)
        if count >= limit:
            raise TooManyLoginFailures(retry_after=retry_after_seconds(reset_after))

    async def check_address(self, address: str) -> None:
        await self._check(f"login:addr:{address}", self.per_address)

    async def check_account(self, account: str) -> None:
        await self._check(f"login:acct:{account}", self.per_account)

    async def record_failure(self, *, account: str, address: str | None) -> None:
        await self.limiter.hit(f"login:acct:{account}", limit=self.per_account, window=self.window)
        if address is not None:
            await self.limiter.hit(
                f"login:addr:{address}", limit=self.per_address, window=self.window
            )

    async def reserve_address(self, address: str) -> None:
        """Count one attempt from `address` now; 429 (and nothing counted) when over the limit."""
        await self._reserve(f"login:addr:{address}", self.per_address)

    async def reserve_account(self, account: str, *, address: str) -> None:
        """Count one attempt on `account` now; 429 when over the limit, in which case both this
        and the address reservation are given back."""
        try:
            await self._reserve(f"login:acct:{account}", self.per_account)
        except TooManyLoginFailures:
            await self.limiter.release(f"login:addr:{address}")
            raise

    async def succeeded(self, *, account: str, address: str) -> None:
        """The password was right: the account starts afresh and the address gets its
        reservation back (successful logins never count)."""
        await self.limiter.reset(f"login:acct:{account}")
        await self.limiter.release(f"login:addr:{address}")

    async def _reserve(self, key: str, limit: int) -> None:
        result = await self.limiter.hit(key, limit=limit, window=self.window)
        if not result.allowed:
            await self.limiter.release(key)
            raise TooManyLoginFailures(retry_after=result.retry_after)

    async def record_success(self, *, account: str) -> None:
        await self.limiter.reset(f"login:acct:{account}")
