"""The transactional outbox and its relay, on real PostgreSQL and real Redis.

Outages use a redis-server of the test's own (stopped and restarted); the crash between `XADD`
and marking rows sent kills a relay subprocess with SIGKILL.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest
from event_fixtures import (
    ApplyingHandler,
    ThrowawayRedis,
    Worker,
    applied_order,
    applied_rows,
    eventually,
    outbox_database,
    per_subject,
    stream_events,
    worker_args,
)
from event_tables import OUTBOX
from redis.asyncio import Redis
from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession
from taskflow_kit.background import running
from taskflow_kit.consumer import StreamConsumer
from taskflow_kit.db import asyncpg_dsn, create_engine
from taskflow_kit.events import Event, backlog_key, stream_key
from taskflow_kit.outbox import Outbox, OutboxRelay
from taskflow_kit.redis_client import create_redis, create_stream_redis
from taskflow_kit.testing import test_redis_url

STREAM = "test"


@pytest.fixture(scope="module")
async def database() -> AsyncIterator[tuple[str, AsyncEngine]]:
    async with outbox_database("tf_kit_outbox") as created:
        yield created


@pytest.fixture
def database_url(database: tuple[str, AsyncEngine]) -> str:
    return database[0]


@pytest.fixture
def producer() -> str:
    return f"producer-{uuid.uuid4().hex[:8]}"


def make_relay(
    database_url: str, engine: AsyncEngine, redis: Redis, prefix: str, producer: str, **kw: Any
) -> OutboxRelay:
    options: dict[str, Any] = {"poll_interval": 30.0, **kw}
    return OutboxRelay(
        engine=engine,
        database_url=database_url,
        table=OUTBOX,
        redis=redis,
        producer=producer,
        key_prefix=prefix,
        **options,
    )


async def write(engine: AsyncEngine, outbox: Outbox, subject: str, seq: int) -> Event:
    """One committed transaction writing one event (nothing waits for its publish)."""
    async with AsyncSession(engine) as session, session.begin():
        return await outbox.add(session, "test.happened", subject, {"seq": seq})


async def outbox_ids(engine: AsyncEngine) -> list[str]:
    async with engine.connect() as connection:
        rows = await connection.execute(select(OUTBOX.c.event_id).order_by(OUTBOX.c.id))
        return [str(event_id) for event_id in rows.scalars()]


async def pending(engine: AsyncEngine) -> int:
    async with engine.connect() as connection:
        count = await connection.scalar(select(func.count()).where(OUTBOX.c.published_at.is_(None)))
    return int(count or 0)


async def test_event_exists_iff_the_transaction_committed(
    engine: AsyncEngine, database_url: str, redis: Redis, event_prefix: str, producer: str
) -> None:
    outbox = Outbox(OUTBOX, producer=producer, stream=STREAM)
    committed = await write(engine, outbox, "1", 0)

    class Refused(Exception):
        pass

    rolled_back: list[Event] = []

    async def refused_change() -> None:
        async with AsyncSession(engine) as session, session.begin():
            rolled_back.append(await outbox.add(session, "test.happened", "1", {"seq": 1}))
            raise Refused

    with pytest.raises(Refused):
        await refused_change()

    assert await outbox_ids(engine) == [committed.id]
    relay = make_relay(database_url, engine, redis, event_prefix, producer)
    assert await relay.drain() == 1
    published = await stream_events(redis, stream_key(event_prefix, STREAM))
    assert [event.id for event in published] == [committed.id]
    assert published[0] == committed
    assert rolled_back[0].id not in {event.id for event in published}


async def test_notify_wakes_the_relay_promptly(
    engine: AsyncEngine, database_url: str, redis: Redis, event_prefix: str, producer: str
) -> None:
    """Polling every 30 s: only the NOTIFY sent on commit can explain a publish within 1 s."""
    outbox = Outbox(OUTBOX, producer=producer, stream=STREAM)
    relay = make_relay(database_url, engine, redis, event_prefix, producer, poll_interval=30.0)
    key = stream_key(event_prefix, STREAM)

    async def length_is(n: int) -> bool:
        return int(await redis.xlen(key)) >= n

    async with running(relay.run()):
        # A first round only runs once the relay LISTENs (nothing else wakes it for 30 s).
        await write(engine, outbox, "warm-up", 0)
        await eventually(lambda: length_is(1), timeout=10, what="the warm-up event")
        latencies = []
        for seq in range(1, 6):
            started = time.monotonic()
            await write(engine, outbox, "s", seq)
            await eventually(lambda n=seq + 1: length_is(n), timeout=5, what="the event")
            latencies.append(time.monotonic() - started)
    print(f"\ncommit -> XADD visible via NOTIFY (poll 30 s): max {max(latencies) * 1000:.1f} ms")
    assert max(latencies) < 1.0


async def test_published_in_id_order(
    engine: AsyncEngine, database_url: str, redis: Redis, event_prefix: str, producer: str
) -> None:
    outbox = Outbox(OUTBOX, producer=producer, stream=STREAM)
    for seq in range(20):
        await write(engine, outbox, str(seq % 3), seq)
    async with AsyncSession(engine) as session, session.begin():  # several in one transaction
        for seq in range(20, 30):
            await outbox.add(session, "test.happened", str(seq % 3), {"seq": seq})
    relay = make_relay(database_url, engine, redis, event_prefix, producer, batch_size=7)
    assert await relay.drain() == 30
    published = await stream_events(redis, stream_key(event_prefix, STREAM))
    assert [event.id for event in published] == await outbox_ids(engine)
    assert [event.data["seq"] for event in published] == list(range(30))
    assert await pending(engine) == 0
    assert await relay.drain() == 0  # nothing is published twice


async def test_add_on_an_asyncpg_connection_exists_iff_its_transaction_committed(
    engine: AsyncEngine, database_url: str, redis: Redis, event_prefix: str, producer: str
) -> None:
    outbox = Outbox(OUTBOX, producer=producer, stream=STREAM)
    connection = await asyncpg.connect(asyncpg_dsn(database_url))
    try:
        async with connection.transaction():
            committed = await outbox.add_on(connection, "test.happened", "7", {"seq": 0})
        transaction = connection.transaction()
        await transaction.start()
        rolled_back = await outbox.add_on(connection, "test.happened", "7", {"seq": 1})
        await transaction.rollback()
    finally:
        await connection.close()
    assert await outbox_ids(engine) == [str(committed.id)]
    relay = make_relay(database_url, engine, redis, event_prefix, producer)
    assert await relay.drain() == 1
    published = await stream_events(redis, stream_key(event_prefix, STREAM))
    assert [event.id for event in published] == [committed.id]
    assert published[0].data == {"seq": 0}
    assert published[0].subject_id == "7"
    assert rolled_back.id not in {event.id for event in published}


async def test_two_relays_publish_every_event_once_in_order_per_subject(
    engine: AsyncEngine, database_url: str, redis: Redis, event_prefix: str, producer: str
) -> None:
    other_engine = create_engine(database_url)
    relays = [
        make_relay(database_url, engine, redis, event_prefix, producer, poll_interval=0.5),
        make_relay(database_url, other_engine, redis, event_prefix, producer, poll_interval=0.5),
    ]
    outbox = Outbox(OUTBOX, producer=producer, stream=STREAM)
    key = stream_key(event_prefix, STREAM)

    async def writer(subject: str) -> None:
        for seq in range(25):  # one transaction after the other: seq is the commit order
            await write(engine, outbox, subject, seq)

    try:
        async with running(relays[0].run(), relays[1].run()):
            await asyncio.gather(*(writer(f"subject-{n}") for n in range(20)))

            async def all_published() -> bool:
                return await pending(engine) == 0 and int(await redis.xlen(key)) >= 500

            await eventually(all_published, timeout=30, what="500 events published")
    finally:
        await other_engine.dispose()
    published = await stream_events(redis, key)
    assert len(published) == 500
    assert len({event.id for event in published}) == 500
    assert set(await outbox_ids(engine)) == {event.id for event in published}
    assert per_subject(published) == {f"subject-{n}": list(range(25)) for n in range(20)}


async def test_prune_removes_only_published_rows_older_than_retention(
    engine: AsyncEngine, database_url: str, redis: Redis, event_prefix: str, producer: str
) -> None:
    async with engine.begin() as connection:

        async def rows(count: int, label: str, created: str, published: str | None) -> None:
            await connection.execute(
                text(
                    "INSERT INTO outbox (event_id, stream, type, subject_id, payload, created_at,"
                    " published_at) SELECT gen_random_uuid(), 'test', 'test.happened', :label,"
                    f" '{{}}', now() - interval '{created}', "
                    + ("NULL" if published is None else f"now() - interval '{published}'")
                    + " FROM generate_series(1, :count)"
                ),
                {"label": label, "count": count},
            )

        await rows(5003, "old-published", "3 days", "2 days")  # more than one prune batch
        await rows(3, "recent-published", "3 days", "1 hour")
        await rows(2, "old-pending", "3 days", None)
    relay = make_relay(
        database_url, engine, redis, event_prefix, producer, retention=dt.timedelta(days=1)
    )
    assert await relay.prune() == 5003
    async with engine.connect() as connection:
        counts = await connection.execute(
            select(OUTBOX.c.subject_id, func.count()).group_by(OUTBOX.c.subject_id)
        )
        left = {str(subject): int(count) for subject, count in counts}
    assert left == {"recent-published": 3, "old-pending": 2}
    assert await relay.prune() == 0


async def test_backlog_figures(
    engine: AsyncEngine, database_url: str, redis: Redis, event_prefix: str, producer: str
) -> None:
    outbox = Outbox(OUTBOX, producer=producer, stream=STREAM)
    for seq in range(3):
        await write(engine, outbox, "s", seq)
    relay = make_relay(database_url, engine, redis, event_prefix, producer)
    assert await relay.backlog() == 3
    assert await relay.report_backlog() == 3
    assert await redis.hget(backlog_key(event_prefix), producer) == "3"
    await relay.drain()
    assert await relay.backlog() == 0
    await relay.report_backlog()
    assert await redis.hget(backlog_key(event_prefix), producer) == "0"


async def test_redis_down_writes_succeed_and_the_backlog_drains_once_in_order(
    engine: AsyncEngine,
    database_url: str,
    event_prefix: str,
    producer: str,
    throwaway_redis: ThrowawayRedis,
) -> None:
    redis = create_redis(throwaway_redis.url)
    stream_redis = create_stream_redis(throwaway_redis.url)
    key = stream_key(event_prefix, STREAM)
    relay = make_relay(database_url, engine, redis, event_prefix, producer)
    outbox = Outbox(OUTBOX, producer=producer, stream=STREAM)
    handler = ApplyingHandler(engine, "counter")
    consumer = StreamConsumer(
        stream_redis,
        streams=[key],
        group="counter",
        handler=handler,
        key_prefix=event_prefix,
        block=0.1,
        claim_idle=0.5,
    )
    subjects = [f"subject-{n}" for n in range(5)]
    written: list[Event] = []
    try:
        async with running(relay.run(), consumer.run()):
            for seq in range(10):
                written.append(await write(engine, outbox, subjects[seq % 5], seq))

            async def first_ten_applied() -> bool:
                return int(await redis.xlen(key)) == 10 and len(await applied_rows(engine)) == 10

            # Before the outage, as a write used to wait for its publish: the outage's backlog
            # is what this test follows.
            await eventually(first_ten_applied, timeout=10, what="the first 10 events applied")

            throwaway_redis.stop()
            outage_waits = []
            for seq in range(10, 40):
                started = time.monotonic()
                written.append(await write(engine, outbox, subjects[seq % 5], seq))  # commits
                outage_waits.append(time.monotonic() - started)

            async def relay_failing() -> bool:
                return not relay.healthy

            await eventually(relay_failing, timeout=10, what="the relay to notice Redis is down")
            assert await pending(engine) == 30
            worst = max(outage_waits) * 1000
            print(f"\nwrite while Redis is down: max {worst:.0f} ms")
            assert max(outage_waits) < 0.5  # a write never waits on Redis

            throwaway_redis.start()

            async def all_applied() -> bool:
                return len(await applied_rows(engine)) >= 40 and await pending(engine) == 0

            await eventually(all_applied, timeout=20, what="the backlog to drain and be applied")

            async def recovered() -> bool:
                return relay.healthy

            await eventually(recovered, timeout=10, what="the relay to recover")
        published = await stream_events(redis, key)
    finally:
        await redis.aclose()
        await stream_redis.aclose()
    rows = await applied_rows(engine)
    assert Counter(event_id for event_id, _, _ in rows) == Counter(e.id for e in written)
    assert [e.id for e in published] == [e.id for e in written]
    assert applied_order(rows) == {
        subject: [seq for seq in range(40) if seq % 5 == n] for n, subject in enumerate(subjects)
    }
    # A redelivery (an entry handled just before the kill, its XACK lost) is a duplicate,
    # never a second effect.
    print(f"redeliveries recognised as duplicates: {handler.duplicates}")


async def test_relay_killed_after_xadd_before_marking_sent_delivers_twice_applies_once(
    engine: AsyncEngine, database_url: str, redis: Redis, event_prefix: str, producer: str
) -> None:
    outbox = Outbox(OUTBOX, producer=producer, stream=STREAM)
    written = [await write(engine, outbox, f"s{seq % 2}", seq) for seq in range(10)]
    key = stream_key(event_prefix, STREAM)
    worker = Worker(
        worker_args(
            "relay",
            db_url=database_url,
            redis_url=test_redis_url(),
            prefix=event_prefix,
            producer=producer,
        )
    )
    blocker = await engine.connect()
    try:
        transaction = await blocker.begin()
        # SELECT ... FOR UPDATE still succeeds under this lock; the relay's UPDATE waits for it.
        await blocker.execute(text("LOCK TABLE outbox IN SHARE MODE"))
        worker.start()

        async def all_in_stream() -> bool:
            assert worker.process is not None
            assert worker.process.poll() is None, worker.output()
            return int(await redis.xlen(key)) >= 10

        started = time.monotonic()
        await eventually(all_in_stream, timeout=60, what="the relay subprocess to XADD")
        print(f"\nrelay subprocess XADDed after {time.monotonic() - started:.2f} s")
        worker.kill()
        assert (
            await blocker.scalar(select(func.count()).where(OUTBOX.c.published_at.is_(None))) == 10
        )
        await transaction.rollback()
    finally:
        await blocker.close()
        worker.remove()

    relay = make_relay(database_url, engine, redis, event_prefix, producer)

    async def drained() -> bool:
        # The killed relay's backend rolls back once it sees its client is gone.
        await relay.drain()
        return await pending(engine) == 0

    started = time.monotonic()
    await eventually(drained, timeout=10, what="a new relay to publish the rows again")
    print(f"republished after {time.monotonic() - started:.2f} s")
    published = await stream_events(redis, key)
    assert Counter(event.id for event in published) == {event.id: 2 for event in written}

    handler = ApplyingHandler(engine, "once")
    consumer = StreamConsumer(
        create_stream_redis(test_redis_url()),
        streams=[key],
        group="once",
        handler=handler,
        key_prefix=event_prefix,
        block=0.05,
    )
    try:
        await consumer.ensure_groups()
        while await consumer.read_once():
            pass
    finally:
        await consumer.redis.aclose()
    rows = await applied_rows(engine)
    assert sorted(event_id for event_id, _, _ in rows) == sorted(e.id for e in written)
    assert len(handler.calls) == 20
    assert handler.duplicates == 10
    assert (await redis.xpending(key, "once"))["pending"] == 0
    assert applied_order(rows) == {"s0": [0, 2, 4, 6, 8], "s1": [1, 3, 5, 7, 9]}
