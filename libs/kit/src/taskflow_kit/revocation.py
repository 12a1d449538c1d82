"""Access that ends at once: a per-user "tokens issued before T are void" map and a set of void
login sessions, held in memory in every process and consulted by the token check.

How it stays current without a call per request:
- user-service's outbox relay records each revoking event in two Redis hashes atomically with
  its `XADD` (`RevocationStore.record`, a relay publish hook);
- each process, at start, notes where the user stream ends, loads both hashes, then follows the
  stream from the noted position (`RevocationListener`), so an event is either in the snapshot or
  read from the stream — never missed. A new replica therefore knows every revocation.

Bound: a revocation is refused everywhere once the event is published and read, which is
milliseconds after the commit while Redis is up (the relay is woken by the commit); the suite
checks < 1 s. While Redis is down it is delayed until Redis returns (user-service itself still
refuses deleted/deactivated users at once: it reads the account on every request).

When Redis loses its data: the source of truth is user-service's outbox, which keeps every
event for longer than an access token lives. user-service's relay notices the missing epoch
key (`taskflow_kit.events.epoch_key`), publishes the retained events again — the hook rebuilds
both hashes — and only then sets the key. A snapshot counts as complete only with that key in
it; until a process has loaded a complete one (a fresh replica after the loss), its token check
waits briefly, then answers 503 with `Retry-After`, instead of trusting an empty map
(`RevocationsIncomplete`). A running process keeps its map: it never forgets what it knew.
A process that has not reached Redis at all since it started still serves (Redis being down
fails no request); it applies the same rule once Redis answers.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import structlog
from redis.asyncio import Redis
from redis.asyncio.client import Pipeline
from redis.exceptions import RedisError

from taskflow_kit.background import stop_if_cancelled, wait_for_up_to
from taskflow_kit.consumer import StreamTail
from taskflow_kit.errors import ServiceUnavailable
from taskflow_kit.events import USER_STREAM, Event, epoch_key, stream_key

logger = structlog.get_logger("taskflow.revocation")

USER_DELETED = "user.deleted"
USER_UPDATED = "user.updated"
USER_LOGGED_OUT = "user.logged_out"
USER_SESSIONS_REVOKED = "user.sessions_revoked"

# Longer than any access token lives: entries older than this can no longer void anything.
DEFAULT_MAX_TOKEN_AGE = 24 * 3600.0
# The producer of the revoking events, whose relay's epoch key says the hashes are complete.
REVOKING_PRODUCER = "user-service"


class RevocationsIncomplete(ServiceUnavailable):
    """This process found Redis without a complete revocation map before it had loaded one
    (Redis lost its data and user-service has not rebuilt the map yet)."""

    def __init__(self) -> None:
        super().__init__("Access checks are starting up; try again in a moment", retry_after=1)


@dataclass(frozen=True, slots=True)
class Revocation:
    """What one event voids: every token of `user_id` issued before `before`, or one session."""

    user_id: int | None
    before: float | None = None
    session_id: str | None = None


def revocation_of(event: Event) -> Revocation | None:
    """The revocation an event carries, or None for an event that voids nothing."""
    if not event.type.startswith("user."):
        return None
    data = event.data
    # Never raises, whatever the data: the relay calls this in its publish hook, where an
    # exception would stop it publishing anything at all.
    profile = data.get("user")
    profile_id = profile.get("id") if isinstance(profile, Mapping) else None
    try:
        user_id = int(data.get("user_id") or profile_id or event.subject_id)
    except (TypeError, ValueError, OverflowError):
        return None
    at = event.occurred_at.timestamp()
    if event.type in (USER_DELETED, USER_SESSIONS_REVOKED):
        return Revocation(user_id, before=at)
    if event.type == USER_UPDATED and data.get("revoke_tokens"):
        return Revocation(user_id, before=at)
    if event.type == USER_LOGGED_OUT and data.get("session_id"):
        return Revocation(user_id, session_id=str(data["session_id"]))
    return None


@dataclass
class RevocationList:
    """The in-memory map every token check consults (dictionary lookups, no I/O)."""

    users: dict[int, float] = field(default_factory=dict)
    sessions: dict[str, float] = field(default_factory=dict)
    max_token_age: float = DEFAULT_MAX_TOKEN_AGE
    # False when Redis answered without the revoking producer's epoch key before this process
    # had loaded a complete snapshot: an empty map there may be missing revocations.
    complete: bool = True
    _completed: asyncio.Event = field(default_factory=asyncio.Event, repr=False)

    def mark_complete(self) -> None:
        self.complete = True
        self._completed.set()

    def mark_incomplete(self) -> None:
        self.complete = False
        self._completed.clear()

    async def wait_complete(self, seconds: float) -> bool:
        """Whether the map is complete, waiting up to `seconds` for it to become so."""
        return self.complete or await wait_for_up_to(self._completed.wait(), seconds)

    def is_revoked(self, user_id: int, issued_at: float, session_id: str | None) -> bool:
        before = self.users.get(user_id)
        if before is not None and issued_at < before:
            return True
        return session_id is not None and session_id in self.sessions

    def apply(self, revocation: Revocation, *, noted_at: float | None = None) -> None:
        if revocation.before is not None and revocation.user_id is not None:
            current = self.users.get(revocation.user_id, -math.inf)
            self.users[revocation.user_id] = max(current, revocation.before)
        if revocation.session_id is not None:
            self.sessions[revocation.session_id] = noted_at or time.time()

    def prune(self, now: float | None = None) -> None:
        cutoff = (now or time.time()) - self.max_token_age
        self.users = {uid: t for uid, t in self.users.items() if t >= cutoff}
        self.sessions = {sid: t for sid, t in self.sessions.items() if t >= cutoff}


class RevocationStore:
    """The Redis copy: hash `revocation:users` (user id → T) and `revocation:sessions`."""

    def __init__(self, redis: Redis, *, key_prefix: str, producer: str = REVOKING_PRODUCER) -> None:
        self.redis = redis
        self.users_key = f"{key_prefix}revocation:users"
        self.sessions_key = f"{key_prefix}revocation:sessions"
        self.epoch_key = epoch_key(key_prefix, producer)

    def record(self, pipe: Pipeline, event: Event) -> None:
        """Relay publish hook: store the event's revocation in the same MULTI as its XADD."""
        revocation = revocation_of(event)
        if revocation is None:
            return
        if revocation.before is not None:
            pipe.hset(self.users_key, str(revocation.user_id), repr(revocation.before))
        if revocation.session_id is not None:
            pipe.hset(self.sessions_key, revocation.session_id, repr(time.time()))

    async def load_into(self, revocations: RevocationList) -> bool:
        """Add the hashes to `revocations`; whether they were complete (the producer's epoch
        key was there, read in the same MULTI as the hashes)."""
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.exists(self.epoch_key)
            pipe.hgetall(self.users_key)
            pipe.hgetall(self.sessions_key)
            complete, users, sessions = await pipe.execute()
        for user_id, before in users.items():
            revocations.apply(Revocation(int(user_id), before=float(before)))
        for session_id, noted_at in sessions.items():
            revocations.apply(
                Revocation(None, session_id=str(session_id)), noted_at=float(noted_at)
            )
        return bool(complete)

    async def prune(self, max_age: float = DEFAULT_MAX_TOKEN_AGE) -> int:
        """Drop entries too old to void any live token."""
        cutoff = time.time() - max_age
        removed = 0
        for key in (self.users_key, self.sessions_key):
            stale = [
                name async for name, value in self.redis.hscan_iter(key) if float(value) < cutoff
            ]
            if stale:
                removed += int(await self.redis.hdel(key, *stale))
        return removed


class RevocationListener:
    """Keeps a `RevocationList` current from the store and the user stream."""

    def __init__(
        self,
        redis: Redis,
        *,
        key_prefix: str,
        revocations: RevocationList,
        on_revoked: Callable[[Revocation], None] | None = None,
        reload_interval: float = 300.0,
        prune_store: bool = False,
    ) -> None:
        self.revocations = revocations
        self.store = RevocationStore(redis, key_prefix=key_prefix)
        self.on_revoked = on_revoked
        self.reload_interval = reload_interval
        self.prune_store = prune_store
        self.tail = StreamTail(
            redis,
            streams=[stream_key(key_prefix, USER_STREAM)],
            handler=self._handle,
            name="revocation",
        )
        self.loaded = False

    async def load(self) -> None:
        """Note the stream position, then read the snapshot (in this order: nothing between
        the two is missed, it is read again from the stream). Loaded only when complete."""
        if not self.tail.positions:
            await self.tail.start()
        if await self.store.load_into(self.revocations):
            self.loaded = True
            self.revocations.mark_complete()
        else:
            self.revocations.mark_incomplete()

    async def start(self, *, wait: float = 2.0) -> None:
        """Load at start-up; a Redis that does not answer does not stop the service starting
        (the listener keeps trying, and loads once Redis answers). Neither does one that
        answers without a complete snapshot: the listener retries until user-service has
        rebuilt it, and meanwhile the token check waits, then answers 503."""
        try:
            loaded = await wait_for_up_to(self.load(), wait)
        except (RedisError, OSError) as exc:
            logger.warning("revocations_not_loaded", error=str(exc))
            return
        if not loaded:
            logger.warning("revocations_not_loaded", error=f"Redis did not answer in {wait} s")
        elif not self.loaded:
            logger.warning("revocations_incomplete", epoch_key=self.store.epoch_key)

    async def _handle(self, event: Event) -> None:
        revocation = revocation_of(event)
        if revocation is None:
            return
        self.revocations.apply(revocation)
        if self.on_revoked is not None:
            self.on_revoked(revocation)

    async def run(self) -> None:
        reload_task = asyncio.create_task(self._reload_forever())
        try:
            await self.tail.run()
        finally:
            reload_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reload_task

    async def _reload_forever(self) -> None:
        while True:
            await asyncio.sleep(0.25 if not self.loaded else self.reload_interval)
            try:
                if not self.loaded:
                    await self.load()
                    continue
                self.revocations.prune()
                await self.store.load_into(self.revocations)
                if self.prune_store:
                    await self.store.prune(self.revocations.max_token_age)
            except (RedisError, OSError) as exc:
                logger.debug("revocations_reload_failed", error=str(exc))
            finally:
                # A cancellation that landed inside a Redis command may come out as a RedisError
                # (redis/redis-py#2028): without this the loop, and the shutdown awaiting it,
                # would never end.
                stop_if_cancelled()
