"""Deleting refresh tokens that can no longer matter, in bounded batches (a periodic job)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import structlog
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from user_service.auth.repository import RefreshTokenRepository

logger = structlog.get_logger("user_service.pruning")

# One run deletes at most this many batches; the next run continues. Each batch is its own
# short transaction, so pruning never holds many row locks or one long transaction.
MAX_BATCHES_PER_RUN = 50


async def prune_refresh_tokens(
    sessionmaker: async_sessionmaker[AsyncSession],
    *,
    batch: int,
    revoked_retention: timedelta,
) -> int:
    """Delete expired tokens and tokens revoked longer than `revoked_retention` ago; the
    number deleted."""
    total = 0
    for _ in range(MAX_BATCHES_PER_RUN):
        async with sessionmaker() as session:
            deleted = await RefreshTokenRepository(session).prune(
                revoked_before=datetime.now(UTC) - revoked_retention, limit=batch
            )
            await session.commit()
        total += deleted
        if deleted < batch:
            break
    if total:
        logger.info("refresh_tokens_pruned", count=total)
    return total
