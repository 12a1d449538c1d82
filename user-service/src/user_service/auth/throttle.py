"""Failed-login throttling with growing delays, keyed on account *and* address (Redis, shared
by replicas).

Three counters of failures, each remembered for a window after its last delay ends:

- the pair (account, address): after `per_pair` failures each further try from that address
  on that account waits a delay that doubles with every failure (1 s, 2 s, 4 s, ... up to
  `max_delay`). Guessing from one address slows down exponentially; the owner, elsewhere, is
  not affected at all, and at their own address after a few typos waits seconds, not minutes.
- the account over every address (`per_account`) and the address over every account
  (`per_address`): the same growing delay, but only for pairs that are not *known*. A pair is
  known for `known_for` after a successful login at that address. So many addresses guessing
  one password delay only strangers, and many failures behind one proxy address (a company
  NAT, a load balancer) never delay people who have signed in from there before.

A login *reserves* its attempt (one atomic script counts it and, if it reaches a threshold,
already starts the next delay) before the password is verified, and gives it back on success:
N parallel guesses cannot all pass a check made before any of them was counted. Successful
logins therefore never count. If Redis fails, the same rules run in this process.
"""

from __future__ import annotations

import contextlib
import hashlib
import time
from dataclasses import dataclass

from redis.asyncio import Redis
from redis.exceptions import RedisError
from starlette.requests import Request
from taskflow_kit.ratelimit import retry_after_seconds

from user_service.auth.errors import TooManyLoginFailures
from user_service.users.repository import UserRow

BASE_DELAY_SECONDS = 1.0

# KEYS: known, pair, account, address. ARGV: the three thresholds, base delay, max delay,
# window (ms). A known pair checks and counts only the pair. Returns {allowed, wait_ms, known}.
_ATTEMPT_SCRIPT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local known = redis.call('EXISTS', KEYS[1]) == 1
local last = 4
if known then last = 2 end
local wait = 0
for i = 2, last do
  local blocked = tonumber(redis.call('HGET', KEYS[i], 'until') or '0')
  if blocked - now > wait then wait = blocked - now end
end
local flag = 0
if known then flag = 1 end
if wait > 0 then return {0, wait, flag} end
for i = 2, last do
  local count = redis.call('HINCRBY', KEYS[i], 'count', 1)
  local free = tonumber(ARGV[i - 1])
  local delay = 0
  if count >= free then
    delay = math.min(tonumber(ARGV[5]), tonumber(ARGV[4]) * 2 ^ (count - free))
    redis.call('HSET', KEYS[i], 'until', now + delay)
  end
  -- Remembered for the window after the delay ends, so the count outlives its own delay.
  redis.call('PEXPIRE', KEYS[i], tonumber(ARGV[6]) + delay)
end
return {1, 0, flag}
"""

# KEYS: known, pair, account, address. ARGV: address threshold, known ttl (ms), counted the
# address (1/0). The pair and the account start afresh; the address gets its attempt back.
_SUCCESS_SCRIPT = """
redis.call('DEL', KEYS[2], KEYS[3])
if ARGV[3] == '1' and redis.call('EXISTS', KEYS[4]) == 1 then
  local count = redis.call('HINCRBY', KEYS[4], 'count', -1)
  if count < tonumber(ARGV[1]) then redis.call('HDEL', KEYS[4], 'until') end
end
redis.call('SET', KEYS[1], '1', 'PX', ARGV[2])
return 1
"""


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


def account_key(identifier: str, user: UserRow | None) -> str:
    """Count by user id when the account exists (so email and username share one budget), else
    by the submitted name (hashed: bounded key length, no raw input in Redis)."""
    if user is not None:
        return f"user:{user.id}"
    digest = hashlib.sha256(identifier.lower().encode("utf-8", "surrogatepass")).hexdigest()
    return f"name:{digest[:32]}"


@dataclass(frozen=True, slots=True)
class LoginAttempt:
    """A reserved attempt, to give back with `LoginThrottle.succeeded`."""

    account: str
    address: str
    known: bool


@dataclass(slots=True)
class _LocalCounter:
    count: int = 0
    until: float = 0.0
    expires: float = 0.0


class LoginThrottle:
    def __init__(
        self,
        redis: Redis,
        *,
        prefix: str,
        per_pair: int,
        per_account: int,
        per_address: int,
        window_seconds: float,
        max_delay_seconds: float,
        known_for_seconds: float,
    ) -> None:
        self.redis = redis
        self.prefix = prefix
        self.thresholds = (per_pair, per_account, per_address)
        self.window = window_seconds
        self.max_delay = max_delay_seconds
        self.known_for = known_for_seconds
        self._attempt = redis.register_script(_ATTEMPT_SCRIPT)
        self._success = redis.register_script(_SUCCESS_SCRIPT)
        self._local: dict[str, _LocalCounter] = {}
        self._local_known: dict[str, float] = {}

    def _keys(self, account: str, address: str) -> list[str]:
        return [
            f"{self.prefix}login:known:{account}:{address}",
            f"{self.prefix}login:pair:{account}:{address}",
            f"{self.prefix}login:acct:{account}",
            f"{self.prefix}login:addr:{address}",
        ]

    async def attempt(self, *, account: str, address: str) -> LoginAttempt:
        """Reserve one try on `account` from `address`; 429 with `Retry-After` (nothing
        counted) while a delay is running."""
        keys = self._keys(account, address)
        try:
            allowed, wait_ms, known = await self._attempt(
                keys=keys,
                args=[
                    *self.thresholds,
                    int(BASE_DELAY_SECONDS * 1000),
                    int(self.max_delay * 1000),
                    int(self.window * 1000),
                ],
            )
        except (RedisError, OSError):
            allowed, wait_ms, known = self._local_attempt(keys)
        if not allowed:
            raise TooManyLoginFailures(retry_after=retry_after_seconds(int(wait_ms) / 1000))
        return LoginAttempt(account=account, address=address, known=bool(known))

    async def succeeded(self, attempt: LoginAttempt) -> None:
        """The password was right: the pair and the account start afresh, the address gets
        its attempt back, and the pair is known from now on."""
        keys = self._keys(attempt.account, attempt.address)
        self._local_success(keys, counted_address=not attempt.known)
        # If Redis fails the local state has it; Redis' counters expire on their own.
        with contextlib.suppress(RedisError, OSError):
            await self._success(
                keys=keys,
                args=[
                    self.thresholds[2],
                    int(self.known_for * 1000),
                    "0" if attempt.known else "1",
                ],
            )

    # The same rules in this process, while Redis is unavailable (fail open to a local limit).

    def _local_attempt(self, keys: list[str]) -> tuple[int, float, int]:
        now = time.monotonic()
        known = self._local_known.get(keys[0], 0.0) > now
        counters = [self._local_counter(key, now) for key in keys[1 : 2 if known else 4]]
        wait = max((counter.until - now for counter in counters), default=0.0)
        if wait > 0:
            return 0, wait * 1000, int(known)
        for counter, free in zip(counters, self.thresholds, strict=False):
            counter.count += 1
            delay = 0.0
            if counter.count >= free:
                delay = min(self.max_delay, BASE_DELAY_SECONDS * 2 ** (counter.count - free))
                counter.until = now + delay
            counter.expires = now + self.window + delay
        if len(self._local) > 100_000:  # bound memory while Redis is away
            self._local = {k: v for k, v in self._local.items() if v.expires > now}
        return 1, 0.0, int(known)

    def _local_counter(self, key: str, now: float) -> _LocalCounter:
        counter = self._local.get(key)
        if counter is None or counter.expires <= now:
            counter = self._local[key] = _LocalCounter()
        return counter

    def _local_success(self, keys: list[str], *, counted_address: bool) -> None:
        self._local.pop(keys[1], None)
        self._local.pop(keys[2], None)
        address = self._local.get(keys[3])
        if counted_address and address is not None:
            address.count = max(0, address.count - 1)
            if address.count < self.thresholds[2]:
                address.until = 0.0
        now = time.monotonic()
        self._local_known[keys[0]] = now + self.known_for
        if len(self._local_known) > 100_000:
            self._local_known = {k: v for k, v in self._local_known.items() if v > now}
