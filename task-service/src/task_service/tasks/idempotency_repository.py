"""Queries on remembered idempotent creations (`idempotency_record`), on asyncpg."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg
from sqlalchemy import BigInteger, String, bindparam, delete, select, tuple_, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from taskflow_kit.db import compile_statement

from task_service.tasks.models import IdempotencyRecord

# Expired idempotency records removed per keyed POST, whoever owns them.
IDEMPOTENCY_SWEEP_BATCH = 100

OWNER_ID = bindparam("owner_id", type_=BigInteger)
KEY = bindparam("key", type_=String)
EXPIRED_BEFORE = bindparam("expired_before", type_=IdempotencyRecord.created_at.type)

_THIS_KEY = (IdempotencyRecord.owner_id == OWNER_ID, IdempotencyRecord.key == KEY)
_DELETE_EXPIRED_KEY = compile_statement(
    delete(IdempotencyRecord).where(*_THIS_KEY, IdempotencyRecord.created_at < EXPIRED_BEFORE)
)
_CLAIM = compile_statement(
    pg_insert(IdempotencyRecord)
    .values(
        owner_id=OWNER_ID,
        key=KEY,
        request_hash=bindparam("request_hash"),
        created_at=bindparam("now"),
    )
    .on_conflict_do_nothing()
    .returning(IdempotencyRecord.key)
)
_SWEEP = compile_statement(
    delete(IdempotencyRecord)
    .where(
        tuple_(IdempotencyRecord.owner_id, IdempotencyRecord.key).in_(
            select(IdempotencyRecord.owner_id, IdempotencyRecord.key)
            .where(IdempotencyRecord.created_at < EXPIRED_BEFORE)
            .order_by(IdempotencyRecord.created_at)
            .limit(bindparam("batch", type_=BigInteger))
            .with_for_update(skip_locked=True)
        )
    )
    .returning(IdempotencyRecord.key)
)
_GET = compile_statement(
    select(IdempotencyRecord.request_hash, IdempotencyRecord.response_body).where(*_THIS_KEY)
)
_SAVE = compile_statement(
    update(IdempotencyRecord).where(*_THIS_KEY).values(response_body=bindparam("body"))
)


@dataclass(frozen=True, slots=True)
class RememberedCreation:
    request_hash: str
    response_body: dict[str, Any] | None


class IdempotencyRepository:
    """(owner, Idempotency-Key) records on one asyncpg connection."""

    def __init__(self, connection: asyncpg.Connection) -> None:
        self.connection = connection

    async def claim(
        self, owner_id: int, key: str, request_hash: str, now: datetime, expired_before: datetime
    ) -> bool:
        """Reserve (owner, key) for this request; False when another request holds it.

        A concurrent duplicate blocks on the unique key until the first transaction ends, then
        sees its committed record (or takes the key over if the first one rolled back).
        """
        await _DELETE_EXPIRED_KEY.execute(
            self.connection, owner_id=owner_id, key=key, expired_before=expired_before
        )
        await self.sweep(expired_before)
        claimed = await _CLAIM.fetchrow(
            self.connection, owner_id=owner_id, key=key, request_hash=request_hash, now=now
        )
        return claimed is not None

    async def sweep(self, expired_before: datetime, *, batch: int = IDEMPOTENCY_SWEEP_BATCH) -> int:
        """Delete up to `batch` expired records of any owner (oldest first, skipping rows
        another transaction holds): every keyed POST sweeps a little, so records never wait
        for their own owner to come back."""
        rows = await _SWEEP.fetch(self.connection, expired_before=expired_before, batch=batch)
        return len(rows)

    async def get(self, owner_id: int, key: str) -> RememberedCreation | None:
        row = await _GET.fetchrow(self.connection, owner_id=owner_id, key=key)
        return None if row is None else RememberedCreation(row[0], row[1])

    async def save_response(self, owner_id: int, key: str, body: dict[str, Any]) -> None:
        await _SAVE.execute(self.connection, owner_id=owner_id, key=key, body=body)
