"""Queries on refresh tokens."""

from __future__ import annotations

import uuid

from sqlalchemy import func, select, update
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

    async def revoke_all_for_user(self, user_id: int) -> int:
        statement = (
            update(RefreshToken)
            .where(RefreshToken.user_id == user_id, RefreshToken.revoked_at.is_(None))
            .values(revoked_at=func.now())
            .execution_options(synchronize_session=False)
        )
        result = await self.session.execute(statement)
        return int(result.rowcount)  # type: ignore[attr-defined]
