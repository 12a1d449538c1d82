"""Reading events from Redis Streams.

- `StreamConsumer`: a consumer group (one per consuming service; its replicas share the work).
  An entry is acknowledged (`XACK`) only after the handler returned, i.e. after the handler
  committed its effect. Entries a crashed or stuck consumer left pending are taken over with
  `XAUTOCLAIM` once idle for `claim_idle`; an entry that failed `max_deliveries` times, or that is
  not an event at all, is moved to the group's dead-letter stream and acknowledged.
  Handlers must be idempotent (deduplicate by event id): see `taskflow_kit.processed` for a
  database-backed consumer and `RedisDedupe` for a stateless one.
- `StreamTail`: every process reads every new entry (no group), for fan-out: the revocation list
  and the gateway's WebSocket push.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, cast

import structlog
from prometheus_client import Counter, Gauge
from redis.asyncio import Redis
from redis.exceptions import RedisError, ResponseError

from taskflow_kit.background import Supervised, stop_if_cancelled, wait_for_up_to
from taskflow_kit.events import (
    EVENT_FIELD,
    Event,
    InvalidEvent,
    backlog_key,
    dead_letter_key,
    stream_key,
)
from taskflow_kit.redis_client import STREAM_BLOCK_SECONDS

logger = structlog.get_logger("taskflow.consumer")

Handler = Callable[[Event], Awaitable[None]]
LAG_REPORT_SECONDS = 5.0  # how often a consumer refreshes its lag gauge

HANDLED = Counter(
    "taskflow_events_handled_total",
    "Events handled by a consumer group",
    ["group", "type", "outcome"],  # outcome: ok | duplicate | failed | dead_letter
)
DEAD_LETTERS = Counter(
    "taskflow_events_dead_lettered_total", "Events moved to a dead-letter stream", ["group"]
)
LAG = Gauge(
    "taskflow_consumer_lag",
    "Entries in the stream not yet delivered to the group, plus those pending acknowledgement",
    ["group", "stream"],
)


def default_consumer_name() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


class RedisDedupe:
    """Deduplication for consumers without a database: an event id is remembered in Redis
    (for `ttl` seconds) once its handler succeeded."""

    def __init__(self, redis: Redis, *, prefix: str, ttl: int = 86_400) -> None:
        self.redis = redis
        self.prefix = prefix
        self.ttl = ttl

    def _key(self, event: Event) -> str:
        return f"{self.prefix}{event.id}"

    async def seen(self, event: Event) -> bool:
        return bool(await self.redis.exists(self._key(event)))

    async def remember(self, event: Event) -> None:
        await self.redis.set(self._key(event), "1", ex=self.ttl)


def deduplicated(handler: Handler, dedupe: RedisDedupe) -> Handler:
    async def handle(event: Event) -> None:
        if await dedupe.seen(event):
            raise DuplicateEvent
        await handler(event)
        await dedupe.remember(event)

    return handle


class DuplicateEvent(Exception):
    """Raised by a handler for an event it has already applied (counted, then acknowledged)."""


class StreamConsumer:
    """One member of consumer group `group` on `streams` (full Redis keys). `redis` must be a
    client made for blocking reads (`create_stream_redis`)."""

    def __init__(
        self,
        redis: Redis,
        *,
        streams: Sequence[str],
        group: str,
        handler: Handler,
        key_prefix: str,
        consumer: str | None = None,
        max_deliveries: int = 5,
        claim_idle: float = 15.0,
        block: float = STREAM_BLOCK_SECONDS,
        batch_size: int = 100,
        start_id: str = "0",
    ) -> None:
        self.redis = redis
        self.streams = list(streams)
        self.group = group
        self.handler = handler
        self.consumer = consumer or default_consumer_name()
        self.max_deliveries = max_deliveries
        self.claim_idle_ms = int(claim_idle * 1000)
        self.block_ms = int(block * 1000)
        self.batch_size = batch_size
        self.start_id = start_id
        self.dead_letters = dead_letter_key(key_prefix, group)
        self._supervised = Supervised("consumer", failures=(RedisError, OSError), group=group)
        self._groups_ready = False

    async def ensure_groups(self) -> None:
        for stream in self.streams:
            try:
                await self.redis.xgroup_create(stream, self.group, id=self.start_id, mkstream=True)
            except ResponseError as exc:
                if "BUSYGROUP" not in str(exc):
                    raise
        self._groups_ready = True

    @property
    def healthy(self) -> bool:
        return self._supervised.healthy

    async def run(self) -> None:
        last_report = 0.0

        async def round_() -> None:
            nonlocal last_report
            if not self._groups_ready:
                await self.ensure_groups()
            await self.claim_stuck()
            await self.read_once()
            stop_if_cancelled()
            if time.monotonic() - last_report >= LAG_REPORT_SECONDS:
                last_report = time.monotonic()
                await self.lag()

        await self._supervised.run(round_, on_failure=self._failed)

    def _failed(self, exc: Exception) -> None:
        if isinstance(exc, ResponseError) and "NOGROUP" in str(exc):
            self._groups_ready = False  # the stream was deleted: create the group again

    async def read_once(self) -> int:
        """Block up to `block` seconds for new entries and handle them; returns how many."""
        response: Any = await self.redis.xreadgroup(
            self.group,
            self.consumer,
            dict.fromkeys(self.streams, ">"),
            count=self.batch_size,
            block=self.block_ms,
        )
        handled = 0
        for stream, entries in response or []:
            for entry_id, fields in entries:
                await self._process(stream, entry_id, fields, deliveries=1)
                handled += 1
        return handled

    async def claim_stuck(self) -> int:
        """Take over entries idle for `claim_idle` (their consumer died or hung), and retry
        this consumer's own failed entries."""
        handled = 0
        for stream in self.streams:
            cursor = "0-0"
            while True:
                result = await self.redis.xautoclaim(
                    stream,
                    self.group,
                    self.consumer,
                    min_idle_time=self.claim_idle_ms,
                    start_id=cursor,
                    count=self.batch_size,
                )
                cursor, entries = result[0], result[1]
                for entry_id, fields in entries:
                    if fields is None:  # deleted from the stream (trimmed) while pending
                        await self.redis.xack(stream, self.group, entry_id)
                        continue
                    deliveries = await self._deliveries(stream, entry_id)
                    await self._process(stream, entry_id, fields, deliveries=deliveries)
                    handled += 1
                if cursor in ("0-0", b"0-0") or not entries:
                    break
        return handled

    async def _deliveries(self, stream: str, entry_id: str) -> int:
        pending = await self.redis.xpending_range(stream, self.group, entry_id, entry_id, 1)
        return int(pending[0]["times_delivered"]) if pending else 1

    async def _process(
        self, stream: str, entry_id: str, fields: Mapping[str, Any], *, deliveries: int
    ) -> None:
        raw = fields.get(EVENT_FIELD)
        try:
            if raw is None:
                raise InvalidEvent(f"entry has no {EVENT_FIELD!r} field")
            event = Event.from_json(raw)
        except InvalidEvent as exc:
            await self._dead_letter(stream, entry_id, fields, reason=str(exc), event_type="?")
            return
        if deliveries > self.max_deliveries:
            await self._dead_letter(
                stream,
                entry_id,
                fields,
                reason=f"failed {deliveries - 1} times",
                event_type=event.type,
            )
            return
        try:
            await self.handler(event)
        except DuplicateEvent:
            HANDLED.labels(self.group, event.type, "duplicate").inc()
        except Exception:
            HANDLED.labels(self.group, event.type, "failed").inc()
            logger.exception(
                "event_handler_failed",
                group=self.group,
                event_id=event.id,
                event_type=event.type,
                deliveries=deliveries,
            )
            return  # stays pending; retried once idle (XAUTOCLAIM), dead-lettered after N
        else:
            HANDLED.labels(self.group, event.type, "ok").inc()
        await self.redis.xack(stream, self.group, entry_id)

    async def _dead_letter(
        self,
        stream: str,
        entry_id: str,
        fields: Mapping[str, Any],
        *,
        reason: str,
        event_type: str,
    ) -> None:
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.xadd(
                self.dead_letters,
                cast(Any, {**fields, "stream": stream, "entry_id": entry_id, "reason": reason}),
                maxlen=10_000,
                approximate=True,
            )
            pipe.xack(stream, self.group, entry_id)
            await pipe.execute()
        DEAD_LETTERS.labels(self.group).inc()
        HANDLED.labels(self.group, event_type, "dead_letter").inc()
        logger.error("event_dead_lettered", group=self.group, entry_id=entry_id, reason=reason)

    async def lag(self) -> dict[str, int]:
        """Per stream: entries not yet delivered to the group plus those not acknowledged."""
        result: dict[str, int] = {}
        for stream in self.streams:
            result[stream] = await group_lag(self.redis, stream, self.group)
            LAG.labels(self.group, stream).set(result[stream])
        return result


async def group_lag(redis: Redis, stream: str, group: str) -> int:
    """Undelivered + unacknowledged entries of `group` on `stream` (0 when caught up).

    Redis 7 reports `lag` itself; on 6.2 it is derived from the last ids (exact when the stream
    has not been trimmed past the group)."""
    try:
        groups = await redis.xinfo_groups(stream)
    except ResponseError:
        return 0  # no stream yet: nothing to consume
    info = next((g for g in groups if _text(g.get("name")) == group), None)
    if info is None:
        return int(await redis.xlen(stream))
    pending = int(info.get("pending") or 0)
    lag = info.get("lag")
    if lag is not None:
        return pending + int(lag)
    stream_info = await redis.xinfo_stream(stream)
    last = _text(stream_info.get("last-generated-id"))
    delivered = _text(info.get("last-delivered-id"))
    if last == delivered:
        return pending
    # Count entries after the last delivered id (bounded: this is a status figure).
    newer: Any = await redis.xrange(stream, min=f"({delivered}", count=10_000)
    return pending + len(newer)


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class StreamTail:
    """Follows streams from now on in every process (XREAD, no group): fan-out delivery.

    `start()` records where each stream ends, so nothing published after it is missed even
    while Redis is unreachable for a while (reading resumes from the last id seen). The ids of
    the last `remember` events handled are kept: an event a relay sends again (after Redis lost
    its data) reaches the handler once, not once per copy.

    A tail nobody needs for a while (the gateway's live updates with no socket open on the
    replica) can be `pause()`d: it stops reading after the read in progress, so the events of
    a busy system cost it nothing. `resume()` notes the streams' end again before it returns
    (what was published while paused is skipped: nobody was listening), so whoever resumed it
    gets everything published after that; if the end cannot be read (Redis down), reading goes
    on from where it paused instead, which repeats events rather than miss any."""

    def __init__(
        self,
        redis: Redis,
        *,
        streams: Sequence[str],
        handler: Handler,
        block: float = STREAM_BLOCK_SECONDS,
        batch_size: int = 200,
        name: str = "tail",
        remember: int = 50_000,
    ) -> None:
        self.redis = redis
        self.streams = list(streams)
        self.handler = handler
        self.block_ms = int(block * 1000)
        self.batch_size = batch_size
        self.name = name
        self.positions: dict[str, str] = {}
        self._supervised = Supervised("stream_tail", failures=(RedisError, OSError), tail=name)
        self.remember = remember
        self._seen: OrderedDict[str, None] = OrderedDict()
        self._following = asyncio.Event()  # cleared while paused
        self._following.set()
        self._parked = False  # the reading loop is waiting for `resume()`, not reading
        self._resuming = asyncio.Lock()

    async def start(self) -> None:
        """Note the current end of every stream (`0-0` for an empty or missing one)."""
        for stream in self.streams:
            last = await self.redis.xrevrange(stream, count=1)
            self.positions[stream] = _text(last[0][0]) if last else "0-0"

    @property
    def healthy(self) -> bool:
        return self._supervised.healthy

    @property
    def paused(self) -> bool:
        """`pause()` was called and `resume()` not since."""
        return not self._following.is_set()

    @property
    def idle(self) -> bool:
        """Paused and no longer reading: the read in progress when it paused is over."""
        return self._parked

    def pause(self) -> None:
        """Stop reading once the read in progress (at most `block` seconds) is handled."""
        self._following.clear()

    async def resume(self, *, within: float = 2.0) -> None:
        """Read again, from the streams' current end (see the class); returns once reading is
        due, so an event published after it is handled. Concurrent calls share one resume."""
        async with self._resuming:
            if self._following.is_set():
                return
            if self._parked:  # not reading since it paused: skip what was published meanwhile
                with contextlib.suppress(RedisError, OSError):  # else from the pause (see above)
                    await wait_for_up_to(self.start(), within)
            # Still reading (paused and resumed within one read): nothing was skipped.
            self._following.set()

    async def run(self) -> None:
        async def round_() -> None:
            if not self._following.is_set():
                self._parked = True
                try:
                    await self._following.wait()
                finally:
                    self._parked = False
            if len(self.positions) < len(self.streams):
                await self.start()
            await self.read_once()
            stop_if_cancelled()

        await self._supervised.run(round_)

    async def read_once(self) -> int:
        response: Any = await self.redis.xread(
            cast(Any, dict(self.positions)), count=self.batch_size, block=self.block_ms
        )
        handled = 0
        for stream, entries in response or []:
            key = _text(stream)
            for entry_id, fields in entries:
                self.positions[key] = _text(entry_id)
                raw = fields.get(EVENT_FIELD)
                if raw is None:
                    continue
                try:
                    event = Event.from_json(raw)
                except InvalidEvent:
                    logger.warning("stream_tail_skipped_entry", tail=self.name, entry=entry_id)
                    continue
                if event.id in self._seen:
                    continue
                self._seen[event.id] = None
                if len(self._seen) > self.remember:
                    self._seen.popitem(last=False)
                try:
                    await self.handler(event)
                except Exception:  # one bad handler call must not stop the tail
                    logger.exception(
                        "stream_tail_handler_failed", tail=self.name, event_id=event.id
                    )
                handled += 1
        return handled


async def events_report(
    redis: Redis, *, key_prefix: str, streams: Sequence[str], groups: Sequence[str]
) -> dict[str, Any]:
    """Streams (length; per consumer group: pending, lag, consumers), dead letters per group
    and the producers' outbox backlogs — the `events` section of the gateway's status."""
    report: dict[str, Any] = {"streams": {}, "dead_letters": {}, "outbox_backlog": {}}
    for name in streams:
        key = stream_key(key_prefix, name)
        try:
            length = int(await redis.xlen(key))
            infos = await redis.xinfo_groups(key) if length else []
        except ResponseError:
            length, infos = 0, []
        report["streams"][name] = {
            "length": length,
            "groups": {
                _text(info.get("name")): {
                    "pending": int(info.get("pending") or 0),
                    "lag": await group_lag(redis, key, _text(info.get("name"))),
                    "consumers": int(info.get("consumers") or 0),
                }
                for info in infos
            },
        }
    for group in groups:
        report["dead_letters"][group] = int(await redis.xlen(dead_letter_key(key_prefix, group)))
    backlog = await redis.hgetall(backlog_key(key_prefix))
    report["outbox_backlog"] = {_text(k): int(v) for k, v in backlog.items()}
    return report


def consumer_for(
    redis: Redis,
    *,
    stream: str,
    group: str,
    handler: Handler,
    key_prefix: str,
    claim_idle: float,
    max_deliveries: int,
) -> StreamConsumer:
    """A consumer of one stream (a short name, e.g. `TASK_STREAM`) under `key_prefix`;
    `claim_idle` seconds before a stuck delivery is claimed, `max_deliveries` before the dead
    letters (a service passes its `ServiceSettings.consumer_options()`)."""
    return StreamConsumer(
        redis,
        streams=[stream_key(key_prefix, stream)],
        group=group,
        handler=handler,
        key_prefix=key_prefix,
        claim_idle=claim_idle,
        max_deliveries=max_deliveries,
    )
