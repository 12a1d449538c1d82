"""Password hashing: bcrypt over an HMAC-SHA256 pre-hash, always off the event loop.

bcrypt only reads the first 72 bytes of its input (and bcrypt >= 5 refuses longer input), while
we accept 8..128 characters of any Unicode, i.e. up to 512 UTF-8 bytes. Every password is
therefore first reduced to base64(HMAC-SHA256(key, utf8(password))): 44 ASCII bytes, no NUL
bytes, every input byte significant. The fixed key only separates this use of SHA-256 from any
other; the secrecy comes from bcrypt's salt and cost.

Hashing is bounded: at most `concurrency` bcrypt runs at once (one per core by default; more
only queue for the same cores while holding memory and connections). A caller waits up to
`queue_seconds` for a slot, then gets 503 + `Retry-After`; when the queue ahead of it
cannot drain within that time anyway (at the recent time per hash), it is refused at once and
frees its database connection for others. A flood of logins or registrations is refused
quickly instead of making every request slow.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import math
import os
import time
from collections.abc import Callable
from typing import TypeVar

import bcrypt
from taskflow_kit.errors import ServiceUnavailable

T = TypeVar("T")

_PREHASH_KEY = b"taskflow.user-service.password.v1"


def _prehash(password: str) -> bytes:
    # "surrogatepass": a login may carry any string, and must fail as a 401, never raise.
    digest = hmac.new(
        _PREHASH_KEY, password.encode("utf-8", "surrogatepass"), hashlib.sha256
    ).digest()
    return base64.b64encode(digest)


def _cost_of(hashed: str) -> int | None:
    # "$2b$12$<salt+hash>"
    parts = hashed.split("$")
    return int(parts[2]) if len(parts) >= 4 and parts[2].isdigit() else None


class PasswordHashingBusy(ServiceUnavailable):
    def __init__(self) -> None:
        super().__init__("Too many sign-ins at once; try again in a moment", retry_after=1)


class PasswordHasher:
    """Hashes and verifies passwords in a worker thread (bcrypt is deliberately slow), at most
    `concurrency` at once."""

    def __init__(
        self, *, rounds: int = 12, concurrency: int | None = None, queue_seconds: float = 2.0
    ) -> None:
        self.rounds = rounds
        self.concurrency = concurrency or os.cpu_count() or 1
        self.queue_seconds = queue_seconds
        self._slots = asyncio.Semaphore(self.concurrency)
        self._waiting = 0
        # Recent seconds per bcrypt run (moving average), to tell a queue that cannot drain.
        self._seconds_per_run = 0.0
        self._dummy_hash: str | None = None

    def _expected_wait(self) -> float:
        """Seconds until a newcomer to the queue would get a slot, at the recent pace."""
        return math.ceil((self._waiting + 1) / self.concurrency) * self._seconds_per_run

    async def _run(self, work: Callable[..., T], *args: str) -> T:
        if self._slots.locked():  # every slot taken (or others already waiting): queue
            if self._expected_wait() > self.queue_seconds:
                raise PasswordHashingBusy()
            self._waiting += 1
            try:
                await asyncio.wait_for(self._slots.acquire(), self.queue_seconds)
            except TimeoutError:
                raise PasswordHashingBusy() from None
            finally:
                self._waiting -= 1
        else:
            await self._slots.acquire()
        started = time.perf_counter()
        try:
            return await asyncio.to_thread(work, *args)
        finally:
            self._slots.release()
            elapsed = time.perf_counter() - started
            self._seconds_per_run = (
                elapsed
                if not self._seconds_per_run
                else 0.8 * self._seconds_per_run + 0.2 * elapsed
            )

    def _hash(self, password: str) -> str:
        return bcrypt.hashpw(_prehash(password), bcrypt.gensalt(self.rounds)).decode("ascii")

    @staticmethod
    def _verify(password: str, hashed: str) -> bool:
        try:
            return bcrypt.checkpw(_prehash(password), hashed.encode("ascii"))
        except ValueError:  # a malformed stored hash never matches
            return False

    async def hash(self, password: str) -> str:
        return await self._run(self._hash, password)

    async def verify(self, password: str, hashed: str) -> bool:
        return await self._run(self._verify, password, hashed)

    async def warm_up(self) -> None:
        """Make the dummy hash now, so the first unknown-user login is not slower than others."""
        if self._dummy_hash is None:
            self._dummy_hash = await self.hash("not-a-real-password")

    async def verify_dummy(self, password: str) -> None:
        """Spend the time of a real verification, for a login whose user does not exist.

        Without it an unknown username answers in microseconds and a known one in ~250 ms, which
        tells an attacker which usernames and emails have accounts.
        """
        await self.warm_up()
        assert self._dummy_hash is not None
        await self.verify(password, self._dummy_hash)

    def needs_rehash(self, hashed: str) -> bool:
        """True when the stored hash was made with another cost than the configured one."""
        return _cost_of(hashed) != self.rounds
