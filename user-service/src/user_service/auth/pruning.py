"""Deleting refresh tokens that can no longer matter, in bounded batches (a periodic job)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import asyncpg
import structlog
from taskflow_kit.db import in_transaction

from user_service.auth.repository import RefreshTokenRepository

logger = structlog.get_logger("user_service.pruning")

# One run deletes at most this many batches; the next run continues. Each batch is its own
# short transaction, so pruning never holds many row locks or one long transaction.
MAX_BATCHES_PER_RUN = 50


async def prune_refresh_tokens(
    pool: asyncpg.Pool, *, batch: int, revoked_retention: timedelta
) -> int:
    """Delete expired tokens and tokens revoked longer than `revoked_retention` ago; the
    number deleted."""
    total = 0
    for _ in range(MAX_BATCHES_PER_RUN):
        async with pool.acquire() as connection, in_transaction(connection):
            deleted = await RefreshTokenRepository(connection).prune(
                revoked_before=datetime.now(UTC) - revoked_retention, limit=batch
            )
        total += deleted
        if deleted < batch:
            break
    if total:
        logger.info("refresh_tokens_pruned", count=total)
    return total
