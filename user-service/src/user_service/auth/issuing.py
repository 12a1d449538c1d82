"""Issuing the access/refresh token pair (signing and verification are the kit's)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from taskflow_kit.tokens import TokenConfig, issue_token

from user_service.users.repository import UserRow


def hash_refresh_token(token: str) -> str:
    """Refresh tokens are stored only as this hash, so a database leak yields no usable token."""
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


@dataclass(frozen=True, slots=True)
class IssuedRefreshToken:
    token: str
    token_hash: str
    expires_at: datetime


@dataclass(frozen=True, slots=True)
class TokenIssuer:
    """Signs the pair. A login session has an absolute end (`session_ttl` after the login): no
    token of it, however often refreshed, outlives that end."""

    config: TokenConfig
    access_ttl: timedelta
    refresh_ttl: timedelta
    session_ttl: timedelta = timedelta(days=30)

    def session_ends_at(self, session_started_at: datetime) -> datetime:
        return session_started_at + self.session_ttl

    def access_ttl_until(self, session_ends_at: datetime, *, now: datetime) -> timedelta:
        return min(self.access_ttl, session_ends_at - now)

    def access_token(self, user: UserRow, *, session_id: str, ttl: timedelta | None = None) -> str:
        """`sid` names the login session (the refresh-token family): logging out voids it."""
        return issue_token(
            self.config,
            subject=str(user.id),
            token_type="access",
            ttl=ttl or self.access_ttl,
            claims={
                "username": user.username,
                "is_superuser": user.is_superuser,
                "sid": session_id,
            },
        )

    def refresh_token(
        self, user: UserRow, *, session_started_at: datetime, now: datetime | None = None
    ) -> IssuedRefreshToken:
        """A refresh token valid for `refresh_ttl` (the idle limit), but never past the
        session's absolute end. It carries the session's start (`sst`), so its successors
        keep the same end."""
        now = now or datetime.now(UTC)
        ttl = min(self.refresh_ttl, self.session_ends_at(session_started_at) - now)
        token = issue_token(
            self.config,
            subject=str(user.id),
            token_type="refresh",
            ttl=ttl,
            now=now,
            claims={"sst": int(session_started_at.timestamp())},
        )
        return IssuedRefreshToken(token, hash_refresh_token(token), now + ttl)
