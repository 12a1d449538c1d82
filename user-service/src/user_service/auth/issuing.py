"""Issuing the access/refresh token pair (signing and verification are the kit's)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from taskflow_kit.tokens import TokenConfig, issue_token

from user_service.users.models import User


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
    config: TokenConfig
    access_ttl: timedelta
    refresh_ttl: timedelta

    def access_token(self, user: User, *, session_id: str) -> str:
        """`sid` names the login session (the refresh-token family): logging out voids it."""
        return issue_token(
            self.config,
            subject=str(user.id),
            token_type="access",
            ttl=self.access_ttl,
            claims={
                "username": user.username,
                "is_superuser": user.is_superuser,
                "sid": session_id,
            },
        )

    def refresh_token(self, user: User) -> IssuedRefreshToken:
        now = datetime.now(UTC)
        token = issue_token(
            self.config,
            subject=str(user.id),
            token_type="refresh",
            ttl=self.refresh_ttl,
            now=now,
        )
        return IssuedRefreshToken(token, hash_refresh_token(token), now + self.refresh_ttl)
