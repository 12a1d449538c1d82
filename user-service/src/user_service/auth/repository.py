"""Queries on refresh tokens, on asyncpg (statements compiled once, as in `users.repository`)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

import asyncpg
from sqlalchemy import BigInteger, bindparam, delete, func, insert, or_, select, update
from taskflow_kit.db import compile_statement

from user_service.auth.models import RefreshToken

USER_ID = bindparam("user_id", type_=BigInteger)
FAMILY_ID = bindparam("family_id", type_=RefreshToken.family_id.type)
TOKEN_HASH = bindparam("token_hash", type_=RefreshToken.token_hash.type)

TOKEN_COLUMNS = (
    RefreshToken.id,
    RefreshToken.user_id,
    RefreshToken.family_id,
    RefreshToken.token_hash,
    RefreshToken.created_at,
    RefreshToken.expires_at,
    RefreshToken.used_at,
    RefreshToken.revoked_at,
)


@dataclass(frozen=True, slots=True)
class RefreshTokenRow:
    """A stored refresh token (`TOKEN_COLUMNS`, in that order)."""

    id: int
    user_id: int
    family_id: uuid.UUID
    token_hash: str
    created_at: datetime
    expires_at: datetime
    used_at: datetime | None
    revoked_at: datetime | None


def _token(row: asyncpg.Record | None) -> RefreshTokenRow | None:
    return None if row is None else RefreshTokenRow(*row)


def _affected(status: str) -> int:
    """The row count of a command's status (`UPDATE 3`, `DELETE 0`)."""
    return int(status.rpartition(" ")[2])


_LIVE = (
    RefreshToken.used_at.is_(None),
    RefreshToken.revoked_at.is_(None),
    RefreshToken.expires_at > func.now(),
)
_CLAIM = compile_statement(
    update(RefreshToken)
    .where(RefreshToken.token_hash == TOKEN_HASH, *_LIVE)
    .values(used_at=func.now())
    .returning(*TOKEN_COLUMNS)
)
_LOCK_BY_HASH = compile_statement(
    select(*TOKEN_COLUMNS).where(RefreshToken.token_hash == TOKEN_HASH).with_for_update()
)
_INSERT = compile_statement(
    insert(RefreshToken).values(
        user_id=USER_ID,
        family_id=FAMILY_ID,
        token_hash=TOKEN_HASH,
        expires_at=bindparam("expires_at", type_=RefreshToken.expires_at.type),
    )
)
_NOT_REVOKED = RefreshToken.revoked_at.is_(None)
_REVOKE_FAMILY = compile_statement(
    update(RefreshToken)
    .where(RefreshToken.family_id == FAMILY_ID, _NOT_REVOKED)
    .values(revoked_at=func.now())
)
_REVOKE_USERS_FAMILY = compile_statement(
    update(RefreshToken)
    .where(RefreshToken.family_id == FAMILY_ID, RefreshToken.user_id == USER_ID, _NOT_REVOKED)
    .values(revoked_at=func.now())
)
_REVOKE_ALL_FOR_USER = compile_statement(
    update(RefreshToken)
    .where(RefreshToken.user_id == USER_ID, _NOT_REVOKED)
    .values(revoked_at=func.now())
)
_REVOKE_FAMILIES = (
    update(RefreshToken)
    .where(RefreshToken.user_id == USER_ID, _NOT_REVOKED)
    .values(revoked_at=func.now())
    .returning(RefreshToken.family_id)
)
_REVOKE_EVERY_FAMILY = compile_statement(_REVOKE_FAMILIES)
_REVOKE_OTHER_FAMILIES = compile_statement(
    _REVOKE_FAMILIES.where(RefreshToken.family_id != bindparam("keep", type_=FAMILY_ID.type))
)
_PRUNE = compile_statement(
    delete(RefreshToken).where(
        RefreshToken.id.in_(
            select(RefreshToken.id)
            .where(
                or_(
                    RefreshToken.expires_at < func.now(),
                    RefreshToken.revoked_at
                    < bindparam("revoked_before", type_=RefreshToken.revoked_at.type),
                )
            )
            .limit(bindparam("limit", type_=BigInteger))
            .with_for_update(skip_locked=True)
            .scalar_subquery()
        )
    )
)


class RefreshTokenRepository:
    """Refresh tokens on one asyncpg connection (in the caller's transaction)."""

    def __init__(self, connection: asyncpg.Connection) -> None:
        self.connection = connection

    async def claim(self, token_hash: str) -> RefreshTokenRow | None:
        """Mark a live token used and return it, or None if it is not live.

        One atomic UPDATE: of two concurrent claims of the same token the second waits for the
        first's row lock, then re-checks `used_at IS NULL` and finds nothing, so at most one
        rotation succeeds.
        """
        return _token(await _CLAIM.fetchrow(self.connection, token_hash=token_hash))

    async def lock_by_hash(self, token_hash: str) -> RefreshTokenRow | None:
        """The token, row-locked until the transaction ends: waits for a transaction that
        holds it (a concurrent claim or reuse of the same token) and returns what it left."""
        return _token(await _LOCK_BY_HASH.fetchrow(self.connection, token_hash=token_hash))

    async def add(
        self, *, user_id: int, family_id: uuid.UUID, token_hash: str, expires_at: datetime
    ) -> None:
        await _INSERT.execute(
            self.connection,
            user_id=user_id,
            family_id=family_id,
            token_hash=token_hash,
            expires_at=expires_at,
        )

    async def revoke_family(self, family_id: uuid.UUID, *, user_id: int | None = None) -> int:
        """Revoke the family's live tokens (only if they are `user_id`'s, when given); how
        many were revoked.

        Repeated until a pass revokes nothing. A pass that meets a token a concurrent rotation
        has claimed waits for it to commit, but sees only the tokens that existed when the
        pass began, so the successor that rotation issued is left to the next pass. It ends:
        once a pass has revoked and locked every token it saw, no rotation can claim one."""
        total = 0
        while True:
            if user_id is None:
                status = await _REVOKE_FAMILY.execute(self.connection, family_id=family_id)
            else:
                status = await _REVOKE_USERS_FAMILY.execute(
                    self.connection, family_id=family_id, user_id=user_id
                )
            revoked = _affected(status)
            if not revoked:
                return total
            total += revoked

    async def revoke_other_families(
        self, user_id: int, *, keep: uuid.UUID | None
    ) -> list[uuid.UUID]:
        """Revoke the user's live sessions except `keep`; the families that were revoked."""
        if keep is None:
            rows = await _REVOKE_EVERY_FAMILY.fetch(self.connection, user_id=user_id)
        else:
            rows = await _REVOKE_OTHER_FAMILIES.fetch(self.connection, user_id=user_id, keep=keep)
        return sorted({row[0] for row in rows})

    async def revoke_all_for_user(self, user_id: int) -> int:
        return _affected(await _REVOKE_ALL_FOR_USER.execute(self.connection, user_id=user_id))

    async def prune(self, *, revoked_before: datetime, limit: int) -> int:
        """Delete up to `limit` tokens that can no longer matter: expired ones (their
        signature check fails anyway) and ones revoked before `revoked_before` (kept until then
        so that a reuse is still recognised and reported). The number deleted."""
        status = await _PRUNE.execute(self.connection, revoked_before=revoked_before, limit=limit)
        return _affected(status)
