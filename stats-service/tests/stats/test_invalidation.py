"""Event-driven invalidation of the statistics cache, on a real Redis."""

from __future__ import annotations

import datetime as dt

from redis.asyncio import Redis
from stats_service.events import CONSUMER_GROUP, TaskEventHandler
from stats_service.stats.cache import StatsCache
from taskflow_kit.events import Event

NOW = dt.datetime(2026, 12, 1, tzinfo=dt.UTC)


def make_cache(redis: Redis, prefix: str, *, stream: str | None = None) -> StatsCache:
    return StatsCache(redis, prefix=prefix, ttl=60, last_good_ttl=3600, events_stream=stream)


def task_event(owner: int, assignee: int | None = None, previous: int | None = None) -> Event:
    return Event(
        type="task.updated",
        producer="task-service",
        subject_id="1",
        data={
            "task": {},
            "owner_id": owner,
            "assignee_id": assignee,
            "previous_assignee_id": previous,
        },
    )


async def test_an_event_makes_every_touched_user_stale(redis: Redis, redis_prefix: str) -> None:
    cache = make_cache(redis, redis_prefix)
    for user in (1, 2, 3, 4):
        lookup = await cache.lookup(f"user:{user}:summary")
        await cache.store(
            f"user:{user}:summary", {"n": user}, now=NOW, generation=lookup.generation
        )
    await cache.store("system:overview", {"n": 0}, now=NOW)
    assert (await cache.lookup("user:1:summary")).entry is not None

    await TaskEventHandler(cache)(task_event(1, assignee=2, previous=3))

    for user in (1, 2, 3):
        assert (await cache.lookup(f"user:{user}:summary")).entry is None
    assert (await cache.lookup("system:overview")).entry is None
    untouched = (await cache.lookup("user:4:summary")).entry
    assert untouched is not None
    assert untouched.value == {"n": 4}
    # the last known good copy stays for the task-service-down path
    assert await cache.last_good("user:1:summary") is not None


async def test_a_value_computed_across_an_invalidation_is_never_served(
    redis: Redis, redis_prefix: str
) -> None:
    cache = make_cache(redis, redis_prefix)
    before = await cache.lookup("user:7:summary")  # a miss: compute starts
    await cache.invalidate([7])  # a task changes while the figures are computed
    await cache.store("user:7:summary", {"old": True}, now=NOW, generation=before.generation)
    assert (await cache.lookup("user:7:summary")).entry is None
    again = await cache.lookup("user:7:summary")
    await cache.store("user:7:summary", {"old": False}, now=NOW, generation=again.generation)
    served = (await cache.lookup("user:7:summary")).entry
    assert served is not None
    assert served.value == {"old": False}


async def test_nothing_is_served_while_the_group_has_unhandled_events(
    redis: Redis, redis_prefix: str
) -> None:
    stream = f"{redis_prefix}events:task"
    cache = make_cache(redis, redis_prefix, stream=stream)
    await redis.xgroup_create(stream, CONSUMER_GROUP, id="$", mkstream=True)
    await cache.store("user:5:summary", {"n": 5}, now=NOW)
    assert (await cache.lookup("user:5:summary")).entry is not None

    await redis.xadd(stream, {"event": task_event(9).to_json()})  # not yet handled
    assert (await cache.lookup("user:5:summary")).entry is None

    entries = await redis.xreadgroup(CONSUMER_GROUP, "c", {stream: ">"}, count=10)
    assert (await cache.lookup("user:5:summary")).entry is None  # delivered, not acked
    for _, items in entries:
        for entry_id, _ in items:
            await redis.xack(stream, CONSUMER_GROUP, entry_id)
    assert (await cache.lookup("user:5:summary")).entry is not None


async def test_a_tagged_copy_is_looked_up_without_reading_the_groups_progress(
    redis: Redis, redis_prefix: str
) -> None:
    """A copy with task-service's tag is revalidated with task-service, so its lookup is one
    round trip (GET, GET): the stream's XINFO answers are not read, and a lagging group does
    not hide the copy (an untagged one stays hidden, as above)."""
    stream = f"{redis_prefix}events:task"
    cache = make_cache(redis, redis_prefix, stream=stream)
    await redis.xgroup_create(stream, CONSUMER_GROUP, id="$", mkstream=True)
    await cache.store("user:6:summary", {"n": 6}, now=NOW, tag='"u6-3"')
    await cache.store("user:7:summary", {"n": 7}, now=NOW)
    await redis.xadd(stream, {"event": task_event(9).to_json()})  # not yet handled

    commands: list[str] = []
    execute = redis.connection_pool.get_connection

    async def recording(*args: object, **kwargs: object) -> object:
        connection = await execute(*args, **kwargs)  # type: ignore[arg-type]
        send = connection.send_packed_command

        async def sent(command: object, *more: object, **extra: object) -> None:
            commands.append(repr(command))
            await send(command, *more, **extra)  # type: ignore[arg-type]

        connection.send_packed_command = sent  # type: ignore[method-assign]
        return connection

    redis.connection_pool.get_connection = recording  # type: ignore[method-assign]
    try:
        tagged = await cache.lookup("user:6:summary")
        tagged_commands = "".join(commands)
        commands.clear()
        untagged = await cache.lookup("user:7:summary")
        untagged_commands = "".join(commands)
    finally:
        redis.connection_pool.get_connection = execute  # type: ignore[method-assign]
    assert tagged.entry is not None
    assert tagged.entry.tag == '"u6-3"'
    assert "XINFO" not in tagged_commands
    assert untagged.entry is None
    assert "XINFO" in untagged_commands
