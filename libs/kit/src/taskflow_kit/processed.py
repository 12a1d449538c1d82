"""The deduplication record of a database-backed consumer (the `[db]` extra): which event ids
it has applied, claimed in the same transaction as the effect."""

from __future__ import annotations

from sqlalchemy import Column, DateTime, MetaData, String, Table, Uuid, func
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from taskflow_kit.events import Event


def processed_event_table(metadata: MetaData) -> Table:
    """Event ids a database-backed consumer has applied (its deduplication record)."""
    return Table(
        "processed_event",
        metadata,
        Column("consumer", String(64), primary_key=True),
        Column("event_id", Uuid, primary_key=True),
        Column("processed_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    )


async def prune_processed(session: AsyncSession, table: Table, *, older_than: float) -> int:
    """Forget applied event ids older than `older_than` seconds (longer than any redelivery:
    the stream's retention bounds how late a duplicate can come)."""
    cutoff = func.now() - func.make_interval(0, 0, 0, 0, 0, 0, older_than)
    result = await session.execute(table.delete().where(table.c.processed_at < cutoff))
    return int(getattr(result, "rowcount", 0) or 0)


async def claim_event(session: AsyncSession, table: Table, consumer: str, event: Event) -> bool:
    """Record `event` as applied by `consumer` in the caller's transaction; False if it already
    was (then the caller skips the effect). Concurrent claims of one id: one wins, the other
    waits for it and gets False."""
    statement = (
        pg_insert(table)
        .values(consumer=consumer, event_id=event.id)
        .on_conflict_do_nothing()
        .returning(table.c.event_id)
    )
    return (await session.execute(statement)).first() is not None
