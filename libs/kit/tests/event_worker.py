"""A relay or a consumer in a process of its own, for the tests that SIGKILL one.

    python event_worker.py relay '{"db_url": ..., "redis_url": ..., "prefix": ..., "producer": ...}'
    python event_worker.py hang-consumer '{"db_url": ..., "redis_url": ..., "stream": ...,
                                           "group": ..., "name": ..., "marker": ..., "prefix": ...}'

`hang-consumer` applies the event inside a database transaction, sets `marker` in Redis, then
hangs with the transaction open: it is killed between read and ack, before its commit.
"""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Any

from event_tables import APPLIED, OUTBOX, PROCESSED
from sqlalchemy import insert
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, create_async_engine
from taskflow_kit.consumer import StreamConsumer
from taskflow_kit.events import Event
from taskflow_kit.outbox import OutboxRelay
from taskflow_kit.processed import claim_event
from taskflow_kit.redis_client import create_redis, create_stream_redis


def database(url: str) -> AsyncEngine:
    # Not taskflow_kit.db: it imports FastAPI, seconds of start-up on a loaded machine.
    return create_async_engine(url.replace("postgresql://", "postgresql+asyncpg://", 1))


async def relay(options: dict[str, Any]) -> None:
    engine = database(options["db_url"])
    relay = OutboxRelay(
        engine=engine,
        database_url=options["db_url"],
        table=OUTBOX,
        redis=create_redis(options["redis_url"]),
        producer=options["producer"],
        key_prefix=options["prefix"],
        poll_interval=0.2,
    )
    print("relay running", flush=True)
    await relay.run()


async def hang_consumer(options: dict[str, Any]) -> None:
    engine = database(options["db_url"])
    marker_redis = create_redis(options["redis_url"])

    async def handle(event: Event) -> None:
        async with AsyncSession(engine) as session, session.begin():
            await claim_event(session, PROCESSED, options["group"], event)
            await session.execute(
                insert(APPLIED).values(
                    event_id=event.id, subject_id=event.subject_id, seq=int(event.data["seq"])
                )
            )
            await session.flush()
            await marker_redis.set(options["marker"], event.id)
            await asyncio.Event().wait()  # killed here: read, effect not committed, not acked

    consumer = StreamConsumer(
        create_stream_redis(options["redis_url"]),
        streams=[options["stream"]],
        group=options["group"],
        handler=handle,
        key_prefix=options["prefix"],
        consumer=options["name"],
        block=0.1,
    )
    print("consumer running", flush=True)
    await consumer.run()


if __name__ == "__main__":
    mode, raw = sys.argv[1], sys.argv[2]
    jobs = {"relay": relay, "hang-consumer": hang_consumer}
    asyncio.run(jobs[mode](json.loads(raw)))
