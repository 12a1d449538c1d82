"""A Redis that comes back without its data (`FLUSHALL` on a throwaway server, as after a
restart without persistence or a failover to a replica that had not caught up): the events it
lost are sent again from the outbox and every consumer catches up, and the revocation map is
rebuilt from user-service's outbox before a fresh process trusts it."""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import redis as sync_redis
from event_fixtures import (
    ApplyingHandler,
    ThrowawayRedis,
    access_token,
    applied_rows,
    eventually,
    outbox_database,
    replica_app,
)
from event_tables import OUTBOX
from redis.asyncio import Redis
from redis.exceptions import RedisError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession
from taskflow_kit.background import running
from taskflow_kit.consumer import StreamConsumer, StreamTail
from taskflow_kit.events import USER_STREAM, Event, epoch_key, stream_key
from taskflow_kit.outbox import Outbox, OutboxRelay
from taskflow_kit.redis_client import create_redis, create_stream_redis
from taskflow_kit.revocation import (
    REVOKING_PRODUCER,
    RevocationList,
    RevocationListener,
    RevocationStore,
)
from taskflow_kit.tokens import TokenConfig

STREAM = "test"
GROUPS = ("stats", "directory")


@pytest.fixture(scope="module")
async def database() -> AsyncIterator[tuple[str, AsyncEngine]]:
    async with outbox_database("tf_kit_loss") as created:
        yield created


def relay_for_test(
    database: tuple[str, AsyncEngine], redis: Redis, prefix: str, producer: str, **kw: Any
) -> OutboxRelay:
    options: dict[str, Any] = {"poll_interval": 0.2, **kw}
    return OutboxRelay(
        engine=database[1],
        database_url=database[0],
        table=OUTBOX,
        redis=redis,
        producer=producer,
        key_prefix=prefix,
        **options,
    )


async def write(
    engine: AsyncEngine, outbox: Outbox, type_: str, subject: int | str, data: dict[str, Any]
) -> Event:
    async with AsyncSession(engine) as session, session.begin():
        event = await outbox.add(session, type_, subject, data)
    return event


class RecordingHandler(ApplyingHandler):
    """Applies like a database-backed consumer, and notes (subject, seq) of each effect."""

    def __init__(self, engine: AsyncEngine, group: str) -> None:
        super().__init__(engine, group)
        self.effects: list[tuple[str, int]] = []

    async def __call__(self, event: Event) -> None:
        await super().__call__(event)  # DuplicateEvent for one applied already
        self.effects.append((event.subject_id, int(event.data["seq"])))


async def test_events_redis_lost_are_sent_again_and_every_consumer_catches_up(
    database: tuple[str, AsyncEngine], engine: AsyncEngine, throwaway_redis: ThrowawayRedis
) -> None:
    prefix = f"loss:{uuid.uuid4().hex[:8]}:"
    redis = create_redis(throwaway_redis.url)
    stream_redis = create_stream_redis(throwaway_redis.url)
    key = stream_key(prefix, STREAM)
    relay = relay_for_test(database, redis, prefix, "producer")
    outbox = Outbox(OUTBOX, producer="producer", stream=STREAM)
    handlers = {group: RecordingHandler(engine, group) for group in GROUPS}
    tailed: list[str] = []

    async def tail_handler(event: Event) -> None:
        tailed.append(event.id)

    tail = StreamTail(stream_redis, streams=[key], handler=tail_handler, block=0.1)
    await tail.start()

    def consumers() -> list[StreamConsumer]:
        return [
            StreamConsumer(
                stream_redis,
                streams=[key],
                group=group,
                handler=handler,
                key_prefix=prefix,
                block=0.1,
                claim_idle=0.5,
            )
            for group, handler in handlers.items()
        ]

    subjects = [f"subject-{n}" for n in range(3)]
    written: list[Event] = []

    async def publish(seq: int) -> None:
        written.append(await write(engine, outbox, "t.x", subjects[seq % 3], {"seq": seq}))

    def applied(count: int) -> Any:
        async def check() -> bool:
            return all(len(handler.effects) >= count for handler in handlers.values())

        return check

    try:
        async with running(relay.run(), tail.run()):
            async with running(*(consumer.run() for consumer in consumers())):
                for seq in range(6):
                    await publish(seq)
                await eventually(applied(6), timeout=10, what="the first events applied")
            # The consumers are stopped: these are published, then lost before anyone reads them.
            for seq in range(6, 12):
                await publish(seq)

            async def all_in_stream() -> bool:
                return int(await redis.xlen(key)) == 12

            await eventually(all_in_stream, timeout=10, what="every event in the stream")
            await redis.flushall()
            lost_at = time.monotonic()
            async with running(*(consumer.run() for consumer in consumers())):
                await eventually(applied(12), timeout=15, what="every group to catch up")
                caught_up_after = time.monotonic() - lost_at
                await publish(12)  # life goes on in the new epoch
                await eventually(applied(13), timeout=10, what="a new event after the loss")

            async def tail_saw_all() -> bool:
                return len(tailed) >= 13

            await eventually(tail_saw_all, timeout=10, what="the tail to see every event")
    finally:
        await redis.aclose()
        await stream_redis.aclose()

    print(f"\nRedis emptied -> every consumer group caught up: {caught_up_after * 1000:.0f} ms")
    expected = {
        subject: [seq for seq in range(13) if seq % 3 == n] for n, subject in enumerate(subjects)
    }
    for group, handler in handlers.items():
        order: dict[str, list[int]] = {}
        for subject, seq in handler.effects:
            order.setdefault(subject, []).append(seq)
        assert order == expected, group  # each effect once, in order per subject
        assert handler.duplicates >= 6, group  # the six applied before the loss came again
        print(f"{group}: {handler.duplicates} re-sent events recognised as duplicates")
    assert len(await applied_rows(engine)) == 13 * len(GROUPS)
    assert sorted(tailed) == sorted(event.id for event in written)  # re-sent copies skipped


async def test_a_fresh_replica_after_redis_lost_its_data_still_refuses_a_revoked_token(
    database: tuple[str, AsyncEngine],
    engine: AsyncEngine,
    throwaway_redis: ThrowawayRedis,
    token_config: TokenConfig,
) -> None:
    prefix = f"loss:{uuid.uuid4().hex[:8]}:"
    redis = create_redis(throwaway_redis.url)
    stream_redis = create_stream_redis(throwaway_redis.url)
    store = RevocationStore(redis, key_prefix=prefix)
    # user-service's relay: the revoking events' producer, with the hook writing the hashes.
    relay = relay_for_test(database, redis, prefix, REVOKING_PRODUCER, hooks=[store.record])
    outbox = Outbox(OUTBOX, producer=REVOKING_PRODUCER, stream=USER_STREAM)
    deleted_user = access_token(token_config, 7, sid="s-7")
    logged_out = access_token(token_config, 8, sid="s-8")
    untouched = access_token(token_config, 9, sid="s-9")
    try:
        async with running(relay.run()):
            await write(engine, outbox, "user.deleted", 7, {"user_id": 7})
            await write(engine, outbox, "user.logged_out", 8, {"user_id": 8, "session_id": "s-8"})

            async def recorded() -> bool:
                return bool(await redis.hexists(store.sessions_key, "s-8"))

            await eventually(recorded, timeout=10, what="the revocations in Redis")
            assert await redis.exists(epoch_key(prefix, REVOKING_PRODUCER))

        # Redis comes back empty while user-service's relay is not running (down, or between
        # two rounds), and a fresh replica starts now.
        await redis.flushall()
        fresh = RevocationList()
        listener = RevocationListener(stream_redis, key_prefix=prefix, revocations=fresh)
        await listener.start(wait=1.0)
        assert not listener.loaded
        assert not fresh.complete
        transport = httpx.ASGITransport(app=replica_app(token_config, fresh))
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:

            async def me(token: str) -> httpx.Response:
                return await client.get("/me", headers={"Authorization": f"Bearer {token}"})

            async with running(listener.run()):
                before = await me(deleted_user)
                # The replica does not trust its empty map: it waits, then refuses with 503.
                assert before.status_code == 503, before.text
                assert before.headers["retry-after"] == "1"
                assert (await me("not-a-token")).status_code == 401  # bad tokens stay 401

                lost_at = time.monotonic()
                async with running(relay.run()):  # user-service's relay is back
                    refused = await me(deleted_user)
                    rebuilt_after = time.monotonic() - lost_at
                    assert refused.status_code == 401, refused.text
                    assert (await me(logged_out)).status_code == 401
                    assert (await me(untouched)).json() == {"id": 9}
    finally:
        await redis.aclose()
        await stream_redis.aclose()
    assert fresh.complete
    assert listener.loaded
    print(
        f"\nuser-service's relay back -> revoked token refused on a fresh replica: "
        f"{rebuilt_after * 1000:.0f} ms"
    )
    assert rebuilt_after < 3.0


async def test_events_still_pending_when_redis_lost_its_data_are_in_the_map_it_trusts(
    database: tuple[str, AsyncEngine],
    engine: AsyncEngine,
    throwaway_redis: ThrowawayRedis,
) -> None:
    """A relay stopped after its EXEC and before its commit leaves the events Redis had as
    pending; then Redis loses its data. The new epoch key is set only with those events in the
    rebuilt hashes (and in the stream once), so no process trusts a map that misses them."""
    prefix = f"loss:{uuid.uuid4().hex[:8]}:"
    redis = create_redis(throwaway_redis.url)
    store = RevocationStore(redis, key_prefix=prefix)
    relay = relay_for_test(database, redis, prefix, REVOKING_PRODUCER, hooks=[store.record])
    outbox = Outbox(OUTBOX, producer=REVOKING_PRODUCER, stream=USER_STREAM)
    try:
        await relay.recover()  # the first epoch, on an empty Redis
        assert await redis.exists(store.epoch_key)
        deleted = await write(engine, outbox, "user.deleted", 21, {"user_id": 21})
        logged_out = await write(
            engine, outbox, "user.logged_out", 22, {"user_id": 22, "session_id": "s-22"}
        )
        await redis.flushall()  # still pending in the outbox: never marked published

        await relay.recover()
        assert await redis.exists(store.epoch_key)
        revocations = RevocationList()
        assert await store.load_into(revocations)  # complete, and it has both
        assert revocations.is_revoked(21, time.time() - 5, None)
        assert revocations.is_revoked(22, time.time() - 5, "s-22")
        assert await relay.drain() == 0  # marked published with the new epoch: not sent twice
        sent = [
            Event.from_json(fields["event"]).id
            for _id, fields in await redis.xrange(stream_key(prefix, USER_STREAM))
        ]
        assert sent.count(deleted.id) == 1
        assert sent.count(logged_out.id) == 1
    finally:
        await redis.aclose()


async def test_a_batch_is_never_published_into_a_redis_that_lost_its_data_meanwhile(
    database: tuple[str, AsyncEngine],
    engine: AsyncEngine,
    throwaway_redis: ThrowawayRedis,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Redis emptied between the relay's check and its EXEC: the batch fails (the epoch key is
    watched) instead of starting the new stream ahead of the older events; the next round
    re-sends everything in order."""
    prefix = f"loss:{uuid.uuid4().hex[:8]}:"
    redis = create_redis(throwaway_redis.url)
    key = stream_key(prefix, STREAM)
    relay = relay_for_test(database, redis, prefix, "producer")
    outbox = Outbox(OUTBOX, producer="producer", stream=STREAM)  # published by hand below
    try:
        first = [await write(engine, outbox, "t.x", "s", {"seq": seq}) for seq in range(3)]
        assert await relay.drain() == 3
        later = [await write(engine, outbox, "t.x", "s", {"seq": seq}) for seq in range(3, 5)]
        queue = relay._queue
        emptier = sync_redis.Redis.from_url(throwaway_redis.url)

        def empty_redis_then_queue(pipe: Any, rows: Any) -> None:
            emptier.flushall()  # after the check, before the EXEC
            queue(pipe, rows)

        monkeypatch.setattr(relay, "_queue", empty_redis_then_queue)
        with pytest.raises(RedisError):
            await relay.publish_batch()
        emptier.close()
        assert int(await redis.exists(key)) == 0  # nothing went into the emptied Redis
        monkeypatch.setattr(relay, "_queue", queue)

        assert await relay.drain() == 2  # the pending two, after the three re-sent
        entries: Any = await redis.xrange(key)
    finally:
        await redis.aclose()
    sent = [Event.from_json(fields["event"]).id for _, fields in entries]
    assert sent == [event.id for event in first + later]
