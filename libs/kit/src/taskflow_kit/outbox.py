"""Transactional outbox: events written with the change, published to Redis Streams by a relay.

- `outbox_table(metadata)` declares the table in a service's metadata; its migration creates it
  and the trigger from `notify_trigger_sql`, which NOTIFYs the relay when a transaction that
  wrote events commits (PostgreSQL delivers NOTIFY only on commit, never for a rollback).
- `Outbox.add(session, ...)` (SQLAlchemy) or `Outbox.add_on(connection, ...)` (asyncpg) inserts
  an event in the caller's transaction: the event exists if and only if the change committed.
  Nothing waits for the publish: the commit's NOTIFY wakes the relay, and a write's response
  goes out without touching Redis (docs/events.md says how readers stay fresh).
- `OutboxRelay` publishes pending rows in id order with `XADD` (bounded stream length), marks them
  published in the same database transaction that locked them, and prunes old published rows.
  Several replicas may run a relay: one publishes at a time (a transaction-scoped advisory lock,
  which also keeps the order per subject), rows are claimed with `FOR UPDATE SKIP LOCKED`.
  A crash between `XADD` and the commit publishes those events again on the next round: delivery
  is at least once, and consumers deduplicate by event id.
- A Redis that lost its data (flushed, or restarted or failed over without it) is noticed by
  its missing epoch key (`taskflow_kit.events.epoch_key`): the relay sends every event its
  outbox still holds (the retention window) again, in order, with the events not published yet
  (marked published with them), then sets the key: the key means every event committed before
  the new epoch began is in Redis. Each batch is
  published with the key watched, so a loss between the check and the `EXEC` fails the batch
  rather than starting the new stream with younger events ahead of older ones.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime as dt
import functools
import time
import zlib
from collections.abc import Callable, Sequence
from typing import Any

import asyncpg
import structlog
from prometheus_client import Counter, Gauge
from redis.asyncio import Redis
from redis.asyncio.client import Pipeline
from redis.exceptions import RedisError
from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    Identity,
    Index,
    MetaData,
    String,
    Table,
    Text,
    Uuid,
    bindparam,
    delete,
    func,
    insert,
    or_,
    select,
    text,
    update,
)
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession

from taskflow_kit.background import Supervised, stop_if_cancelled, wait_for_up_to
from taskflow_kit.db import Statement, asyncpg_dsn, compile_statement
from taskflow_kit.events import EVENT_FIELD, Event, backlog_key, epoch_key, stream_key

logger = structlog.get_logger("taskflow.outbox")

PUBLISHED = Counter(
    "taskflow_events_published_total", "Events published to Redis Streams", ["producer"]
)
BACKLOG = Gauge("taskflow_outbox_backlog", "Events committed but not yet published", ["producer"])
RELAY_FAILURES = Counter(
    "taskflow_outbox_relay_failures_total", "Relay rounds that failed", ["producer", "reason"]
)
RESENT = Counter(
    "taskflow_outbox_resent_total", "Events sent again after Redis lost its data", ["producer"]
)

NOTIFY_CHANNEL = "taskflow_outbox"
# Hooks that add commands to the publishing MULTI/EXEC, so they happen atomically with the XADD.
PublishHook = Callable[[Pipeline, Event], None]


class RedisLostData(RedisError):
    """The epoch key vanished while a batch was being published: the next round re-sends."""


def outbox_table(metadata: MetaData) -> Table:
    """The `outbox` table: one row per event, pending until `published_at` is set."""
    return Table(
        "outbox",
        metadata,
        Column("id", BigInteger, Identity(), primary_key=True),
        Column("event_id", Uuid, nullable=False, unique=True),
        Column("stream", String(64), nullable=False),
        Column("type", String(64), nullable=False),
        Column("subject_id", String(64), nullable=False),
        Column("payload", Text, nullable=False),
        Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
        Column("published_at", DateTime(timezone=True)),
        Index("ix_outbox_pending", "id", postgresql_where=text("published_at IS NULL")),
        Index("ix_outbox_published_at", "published_at"),
    )


def notify_trigger_sql(channel: str = NOTIFY_CHANNEL) -> tuple[list[str], list[str]]:
    """(upgrade, downgrade) statements of the trigger that wakes relays on commit."""
    upgrade = [
        f"""CREATE FUNCTION outbox_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN PERFORM pg_notify('{channel}', ''); RETURN NULL; END $$""",
        "CREATE TRIGGER outbox_notify AFTER INSERT ON outbox "
        "FOR EACH STATEMENT EXECUTE FUNCTION outbox_notify()",
    ]
    downgrade = ["DROP TRIGGER IF EXISTS outbox_notify ON outbox", "DROP FUNCTION outbox_notify()"]
    return upgrade, downgrade


class Outbox:
    """Writes a service's events into its outbox, in the caller's transaction. Nothing waits
    for the publish: the relay is woken by the NOTIFY of the commit itself."""

    def __init__(self, table: Table, *, producer: str, stream: str) -> None:
        self.table = table
        self.producer = producer
        self.stream = stream
        self._insert: Statement = compile_statement(
            insert(table).values(
                event_id=bindparam("event_id"),
                stream=bindparam("stream"),
                type=bindparam("type"),
                subject_id=bindparam("subject_id"),
                payload=bindparam("payload"),
            )
        )

    def event(
        self,
        type_: str,
        subject_id: int | str,
        data: dict[str, Any],
        *,
        occurred_at: dt.datetime | None = None,
    ) -> Event:
        event = Event(type=type_, producer=self.producer, subject_id=str(subject_id), data=data)
        if occurred_at is not None:
            event = dataclasses.replace(event, occurred_at=occurred_at)
        return event

    def row(self, event: Event) -> dict[str, Any]:
        """The outbox row of `event` (column → value), for a caller that inserts it itself."""
        return {
            "event_id": event.id,
            "stream": self.stream,
            "type": event.type,
            "subject_id": event.subject_id,
            "payload": event.to_json(),
        }

    async def add(
        self,
        session: AsyncSession,
        type_: str,
        subject_id: int | str,
        data: dict[str, Any],
        *,
        occurred_at: dt.datetime | None = None,
    ) -> Event:
        """Insert the event in the session's transaction."""
        event = self.event(type_, subject_id, data, occurred_at=occurred_at)
        await session.execute(insert(self.table).values(**self.row(event)))
        return event

    async def add_on(
        self,
        connection: asyncpg.Connection,
        type_: str,
        subject_id: int | str,
        data: dict[str, Any],
        *,
        occurred_at: dt.datetime | None = None,
    ) -> Event:
        """Insert the event on an asyncpg connection, in its current transaction."""
        event = self.event(type_, subject_id, data, occurred_at=occurred_at)
        await self._insert.execute(connection, **self.row(event))
        return event


class OutboxRelay:
    """Publishes a service's outbox to Redis Streams; one `run()` task per process."""

    def __init__(
        self,
        *,
        engine: AsyncEngine,
        database_url: str,
        table: Table,
        redis: Redis,
        producer: str,
        key_prefix: str,
        batch_size: int = 200,
        stream_maxlen: int = 100_000,
        poll_interval: float = 2.0,
        retention: dt.timedelta = dt.timedelta(days=1),
        prune_interval: float = 300.0,
        hooks: Sequence[PublishHook] = (),
    ) -> None:
        self.engine = engine
        self.database_url = database_url
        self.table = table
        self.redis = redis
        self.producer = producer
        self.key_prefix = key_prefix
        self.batch_size = batch_size
        self.stream_maxlen = stream_maxlen
        self.poll_interval = poll_interval
        self.retention = retention
        self.prune_interval = prune_interval
        self.hooks = list(hooks)
        self.lock_key = zlib.crc32(f"taskflow-outbox:{producer}".encode())
        self.epoch_key = epoch_key(key_prefix, producer)
        self._supervised = Supervised("outbox_relay", producer=producer)
        self._wake = asyncio.Event()
        self._last_prune = 0.0
        self._last_backlog = 0.0

    # -- the background task -----------------------------------------------------------------

    @property
    def healthy(self) -> bool:
        return self._supervised.healthy

    async def run(self) -> None:
        listener = asyncio.create_task(self._listen())

        async def round_() -> None:
            await wait_for_up_to(self._wake.wait(), self.poll_interval)
            stop_if_cancelled()
            self._wake.clear()
            await self.drain()
            await self._housekeeping()

        try:
            await self._supervised.run(round_, on_failure=self._failed)
        finally:
            listener.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await listener

    def _failed(self, exc: Exception) -> None:
        reason = "redis" if isinstance(exc, RedisError | OSError) else type(exc).__name__
        RELAY_FAILURES.labels(self.producer, reason).inc()
        self._wake.set()  # try again after the backoff, not only on the next commit

    async def drain(self) -> int:
        """Publish until nothing is pending (or another replica holds the relay lock)."""
        total = 0
        while True:
            published = await self.publish_batch()
            total += published
            if published < self.batch_size:
                return total

    async def publish_batch(self) -> int:
        """One round: lock, re-send what Redis lost (if it did), read pending rows in id order,
        XADD them in one MULTI, mark them."""
        table = self.table
        async with self.engine.begin() as connection:
            if not await self._try_lock(connection):
                return 0  # another replica is publishing right now; it will take these rows
            _resent, published = await self._resend_if_lost(connection)
            rows = (
                await connection.execute(
                    select(table.c.id, table.c.stream, table.c.payload)
                    .where(table.c.published_at.is_(None))
                    .order_by(table.c.id)
                    .limit(self.batch_size)
                    .with_for_update(skip_locked=True)
                )
            ).all()
            if not rows:
                return published
            await self._exec_while(self.epoch_key, lambda pipe: self._queue(pipe, rows))
            await connection.execute(
                update(table)
                .where(table.c.id.in_([row.id for row in rows]))
                .values(published_at=func.now())
            )
        PUBLISHED.labels(self.producer).inc(len(rows))
        return published + len(rows)

    async def _try_lock(self, connection: AsyncConnection) -> bool:
        locked = await connection.scalar(select(func.pg_try_advisory_xact_lock(self.lock_key)))
        return bool(locked)

    async def _exec_while(self, key: str, queue: Callable[[Pipeline], None]) -> None:
        """Run the commands `queue` adds in one MULTI/EXEC, only while `key` exists (watched):
        Redis losing its data before the EXEC fails them all (`RedisLostData`, `WatchError`)
        instead of starting a new stream with them."""
        async with self.redis.pipeline(transaction=True) as pipe:
            await pipe.watch(key)
            if not await pipe.exists(key):
                raise RedisLostData(f"{key} is gone: Redis lost its data")
            pipe.multi()  # type: ignore[no-untyped-call]
            queue(pipe)
            await pipe.execute()

    def _queue(self, pipe: Pipeline, rows: Sequence[Any]) -> None:
        """XADD each row (and whatever the hooks add for its event) to the MULTI."""
        for row in rows:
            pipe.xadd(
                stream_key(self.key_prefix, row.stream),
                {EVENT_FIELD: row.payload},
                maxlen=self.stream_maxlen,
                approximate=True,
            )
            if self.hooks:
                event = Event.from_json(row.payload)
                for hook in self.hooks:
                    hook(pipe, event)

    # -- Redis that lost its data ------------------------------------------------------------

    async def recover(self) -> int:
        """Re-send the events Redis lost, if it lost them, now (a service calls this at start,
        before anything waits for the epoch key). How many were sent; 0 also when another
        replica holds the relay lock (it does the same)."""
        async with self.engine.begin() as connection:
            if not await self._try_lock(connection):
                return 0
            resent, _published = await self._resend_if_lost(connection)
            return resent

    async def _resend_if_lost(self, connection: AsyncConnection) -> tuple[int, int]:
        """With the relay lock held: when the epoch key is missing, XADD every event still
        retained, published or not (id order, publish hooks included), then set the key and mark
        the ones that were pending as published (in the caller's transaction).

        Pending events go with them so that the key never says "complete" while a committed
        event is missing from Redis: a relay stopped between its `EXEC` and its commit leaves
        rows Redis had (then lost) still pending, and a revocation among them must be in the
        rebuilt hashes before anyone trusts them (`taskflow_kit.revocation`).

        Consumers deduplicate by event id, so events Redis still had are applied once; the
        re-sent rows stay marked published (their age still decides when they are pruned).
        A first start on an empty Redis finds no key either and sends nothing or a little.
        Returns how many events were sent, and how many of them were pending."""
        if await self.redis.exists(self.epoch_key):
            return 0, 0
        started = time.monotonic()
        table = self.table
        cutoff = dt.datetime.now(dt.UTC) - self.retention
        result = await connection.stream(
            select(table.c.id, table.c.stream, table.c.payload, table.c.published_at)
            .where(or_(table.c.published_at >= cutoff, table.c.published_at.is_(None)))
            .order_by(table.c.id)
        )
        newly_published = 0
        # Redis could lose its data again while this runs: every chunk is sent only while this
        # marker is still there, and the epoch key replaces it in the last MULTI.
        resending = f"{self.epoch_key}:resending"
        await self.redis.set(resending, "1")
        resent = 0
        async for rows in result.partitions(self.batch_size):
            await self._exec_while(resending, functools.partial(self._queue, rows=rows))
            resent += len(rows)
            pending = [row.id for row in rows if row.published_at is None]
            if pending:  # committed with the epoch key below, or not at all
                await connection.execute(
                    update(table).where(table.c.id.in_(pending)).values(published_at=func.now())
                )
                newly_published += len(pending)
        epoch = dt.datetime.now(dt.UTC).isoformat()

        def start_epoch(pipe: Pipeline) -> None:
            pipe.set(self.epoch_key, epoch)
            pipe.delete(resending)

        await self._exec_while(resending, start_epoch)
        PUBLISHED.labels(self.producer).inc(newly_published)
        RESENT.labels(self.producer).inc(resent - newly_published)
        log = logger.warning if resent else logger.info
        log(
            "outbox_epoch_started",
            producer=self.producer,
            resent=resent,
            of_them_pending=newly_published,
            seconds=round(time.monotonic() - started, 3),
        )
        return resent, newly_published

    async def _housekeeping(self) -> None:
        now = time.monotonic()
        if now - self._last_backlog >= 5.0:
            self._last_backlog = now
            await self.report_backlog()
        if now - self._last_prune >= self.prune_interval:
            self._last_prune = now
            await self.prune()

    async def backlog(self) -> int:
        async with self.engine.connect() as connection:
            count = await connection.scalar(
                select(func.count()).where(self.table.c.published_at.is_(None))
            )
        return int(count or 0)

    async def report_backlog(self) -> int:
        pending = await self.backlog()
        BACKLOG.labels(self.producer).set(pending)
        await self.redis.hset(backlog_key(self.key_prefix), self.producer, pending)
        return pending

    async def prune(self) -> int:
        """Delete published rows older than the retention period (bounded batches)."""
        table = self.table
        cutoff = dt.datetime.now(dt.UTC) - self.retention
        removed = 0
        while True:
            async with self.engine.begin() as connection:
                batch = (
                    select(table.c.id)
                    .where(table.c.published_at < cutoff)
                    .limit(5000)
                    .scalar_subquery()
                )
                result = await connection.execute(delete(table).where(table.c.id.in_(batch)))
            count = int(result.rowcount)
            removed += count
            if count < 5000:
                return removed

    async def _listen(self) -> None:
        """LISTEN on a dedicated connection: a commit anywhere (any replica) wakes this relay."""
        while True:
            connection: asyncpg.Connection | None = None
            try:
                connection = await asyncpg.connect(asyncpg_dsn(self.database_url), timeout=5)
                lost = asyncio.Event()
                connection.add_termination_listener(lambda _, lost=lost: lost.set())
                await connection.add_listener(NOTIFY_CHANNEL, self._notified)
                self._wake.set()  # anything committed while we were not listening
                await lost.wait()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                logger.debug("outbox_listen_failed", error=str(exc))
            finally:
                if connection is not None and not connection.is_closed():
                    with contextlib.suppress(Exception):
                        await connection.close(timeout=1)
            await asyncio.sleep(1.0)

    def _notified(self, *_: Any) -> None:
        self._wake.set()


def create_outbox_v1(op: Any) -> None:
    """Alembic `upgrade()` body creating the outbox table, its indexes and the NOTIFY trigger
    (version 1 of the layout: a later change gets a new function, this one stays as it is)."""
    import sqlalchemy as sa

    op.create_table(
        "outbox",
        sa.Column("id", sa.BigInteger(), sa.Identity(), nullable=False),
        sa.Column("event_id", sa.Uuid(), nullable=False),
        sa.Column("stream", sa.String(64), nullable=False),
        sa.Column("type", sa.String(64), nullable=False),
        sa.Column("subject_id", sa.String(64), nullable=False),
        sa.Column("payload", sa.Text(), nullable=False),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.Column("published_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_outbox"),
        sa.UniqueConstraint("event_id", name="uq_outbox_event_id"),
    )
    op.create_index(
        "ix_outbox_pending", "outbox", ["id"], postgresql_where=sa.text("published_at IS NULL")
    )
    op.create_index("ix_outbox_published_at", "outbox", ["published_at"])
    for statement in notify_trigger_sql()[0]:
        op.execute(statement)


def drop_outbox_v1(op: Any) -> None:
    for statement in notify_trigger_sql()[1]:
        op.execute(statement)
    op.drop_table("outbox")
