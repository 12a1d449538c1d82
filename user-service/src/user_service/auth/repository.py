"""Queries on refresh tokens."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import delete, func, or_, select, update
from taskflow_kit.repository import RepositoryBase

from user_service.auth.models import RefreshToken


class RefreshTokenRepository(RepositoryBase[RefreshToken]):
    model = RefreshToken

    async def claim(self, token_hash: str) -> RefreshToken | None:
        """Mark a live token used and return it, or None if it is not live.

        One atomic UPDATE: of two concurrent claims of the same token the second waits for the
        first's row lock, then re-checks `used_at IS NULL` and finds nothing, so at most one
        rotation succeeds.
        """
        statement = (
            update(RefreshToken)
            .where(
                RefreshToken.token_hash == token_hash,
                RefreshToken.used_at.is_(None),
                RefreshToken.revoked_at.is_(None),
                RefreshToken.expires_at > func.now(),
            )
            .values(used_at=func.now())
            .returning(RefreshToken)
            .execution_options(synchronize_session=False)
        )
        return (await self.session.execute(statement)).scalars().first()

    async def get_by_hash(self, token_hash: str) -> RefreshToken | None:
        statement = select(RefreshToken).where(RefreshToken.token_hash == token_hash)
        return (await self.session.execute(statement)).scalars().first()

    async def revoke_family(self, family_id: uuid.UUID, *, user_id: int | None = None) -> int:
        conditions = [RefreshToken.family_id == family_id, RefreshToken.revoked_at.is_(None)]
        if user_id is not None:
            conditions.append(RefreshToken.user_id == user_id)
        statement = (
            update(RefreshToken)
            .where(*conditions)
            .values(revoked_at=func.now())
            .execution_options(synchronize_session=False)
        )
        result = await self.session.execute(statement)
        return int(result.rowcount)  # type: ignore[attr-defined]

    async def revoke_other_families(
        self, user_id: int, *, keep: uuid.UUID | None
    ) -> list[uuid.UUID]:
        """Revoke the user's live sessions except `keep`; the families that were revoked."""
        statement = (
            update(RefreshToken)
            .where(RefreshToken.user_id == user_id, RefreshToken.revoked_at.is_(None))
            .values(revoked_at=func.now())
            .returning(RefreshToken.family_id)
            .execution_options(synchronize_session=False)
        )
        if keep is not None:
            statement = statement.where(RefreshToken.family_id != keep)
        return sorted(set((await self.session.execute(statement)).scalars().all()))

    async def prune(self, *, revoked_before: datetime, limit: int) -> int:
        """Delete up to `limit` tokens that can no longer matter: expired ones (their
        signature check fails anyway) and ones revoked before `revoked_before` (kept until then
        so that a reuse is still recognised and reported). The number deleted."""
        doomed = (
            select(RefreshToken.id)
            .where(
                or_(
                    RefreshToken.expires_at < func.now(),
                    RefreshToken.revoked_at < revoked_before,
                )
            )
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
        statement = delete(RefreshToken).where(RefreshToken.id.in_(doomed.scalar_subquery()))
        result = await self.session.execute(statement.execution_options(synchronize_session=False))
        return int(result.rowcount)  # type: ignore[attr-defined]

    async def revoke_all_for_user(self, user_id: int) -> int:
        statement = (
            update(RefreshToken)
            .where(RefreshToken.user_id == user_id, RefreshToken.revoked_at.is_(None))
            .values(revoked_at=func.now())
            .execution_options(synchronize_session=False)
        )
        result = await self.session.execute(statement)
        return int(result.rowcount)  # type: ignore[attr-defined]
