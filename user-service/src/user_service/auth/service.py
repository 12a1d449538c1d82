"""Login, refresh-token rotation and logout."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import asyncpg
from taskflow_kit.outbox import Outbox
from taskflow_kit.tokens import InvalidTokenError, TokenConfig, decode_token, subject_id

from user_service.auth.errors import (
    InvalidCredentials,
    InvalidRefreshToken,
    RefreshTokenReused,
    TooManyLoginFailures,
)
from user_service.auth.issuing import TokenIssuer, hash_refresh_token
from user_service.auth.repository import RefreshTokenRepository
from user_service.auth.schemas import BrowserSession, TokenPair
from user_service.auth.throttle import LoginThrottle, account_key
from user_service.passwords import PasswordHasher
from user_service.security_log import security_event
from user_service.users.events import UserEvents
from user_service.users.repository import UserRepository, UserRow
from user_service.users.schemas import PASSWORD_MAX


@dataclass(frozen=True, slots=True)
class SessionTokens:
    """A freshly issued pair, with when the refresh token and the whole session end."""

    access_token: str
    expires_in: int
    refresh_token: str
    refresh_expires_at: datetime
    session_expires_at: datetime

    def pair(self) -> TokenPair:
        return TokenPair(
            access_token=self.access_token,
            expires_in=self.expires_in,
            refresh_token=self.refresh_token,
        )

    def browser_session(self) -> BrowserSession:
        return BrowserSession(
            access_token=self.access_token,
            expires_in=self.expires_in,
            session_expires_at=self.session_expires_at,
        )


class AuthService:
    """Login, rotation and logout over one connection (in the request's transaction, or in
    the one `auth.router.rotate` opens)."""

    def __init__(
        self,
        connection: asyncpg.Connection,
        *,
        hasher: PasswordHasher,
        throttle: LoginThrottle,
        issuer: TokenIssuer,
        outbox: Outbox,
    ) -> None:
        self.users = UserRepository(connection)
        self.refresh_tokens = RefreshTokenRepository(connection)
        self.events = UserEvents(connection, outbox)
        self.hasher = hasher
        self.throttle = throttle
        self.issuer = issuer

    @property
    def token_config(self) -> TokenConfig:
        return self.issuer.config

    async def authenticate(self, identifier: str, password: str, *, address: str) -> UserRow:
        """The active user with these credentials; 401 otherwise, 429 while a failure delay
        runs (see `LoginThrottle`).

        The attempt is reserved (counted) before the slow password check and given back on
        success, so parallel guesses cannot all slip under the limit.
        """
        user = await self.users.get_by_login(identifier)
        user_id = user.id if user is not None else None
        try:
            attempt = await self.throttle.attempt(
                account=account_key(identifier, user), address=address
            )
        except TooManyLoginFailures:
            security_event("login_throttled", user_id=user_id, address=address)
            raise

        if user is None:
            await self.hasher.verify_dummy(password)
            valid = False
        elif len(password) > PASSWORD_MAX:
            # No stored password can be this long; still spend the same time.
            await self.hasher.verify_dummy(password)
            valid = False
        else:
            valid = await self.hasher.verify(password, user.hashed_password)

        if user is None or not valid or not user.is_active:
            reason = (
                "unknown_user" if user is None else "wrong_password" if not valid else "inactive"
            )
            security_event("login_failed", user_id=user_id, address=address, reason=reason)
            raise InvalidCredentials()
        # The flags the token will claim, read again under a share lock (see get_for_share).
        user = await self.users.get_for_share(user.id)
        if user is None or not user.is_active:
            raise InvalidCredentials()

        await self.throttle.succeeded(attempt)
        if self.hasher.needs_rehash(user.hashed_password):
            rehashed = await self.users.update(
                user.id, {"hashed_password": await self.hasher.hash(password)}
            )
            assert rehashed is not None  # the share lock keeps the row from being deleted
            user = rehashed
        return user

    async def login(self, identifier: str, password: str, *, address: str) -> SessionTokens:
        """A new login session (refresh-token family) whose absolute end starts now."""
        user = await self.authenticate(identifier, password, address=address)
        security_event("login_succeeded", user_id=user.id, address=address)
        return await self._issue(user, family_id=uuid.uuid4(), started_at=datetime.now(UTC))

    async def refresh(self, refresh_token: str, *, address: str) -> SessionTokens:
        """Rotate: the presented token is spent and a new pair (same family) returned, which
        ends no later than the session's absolute end.

        A token that is already used or revoked is reuse (possibly a stolen copy), so the whole
        family is revoked: neither the thief nor the victim can continue without logging in.
        That includes two concurrent refreshes of one token: one wins, the other is reuse.

        Locks are taken in the order every other change takes them, so that none waits for
        the other in a circle (a deadlock, answered 503):
        - the user's row first (`FOR SHARE`, by the token's subject), as a password or email
          change, a deactivation or a deletion locks it before the user's tokens;
        - then the presented token. A claim that found it taken holds its row lock to the end
          of the transaction (PostgreSQL locks the row it re-checked); a reuse that did not
          wait in its claim locks it next. Every reuse of one token queues on that token,
          holding none of the session's other tokens, before the session is revoked.
        Races between different tokens of one session can still deadlock; the route runs the
        rotation again then (`taskflow_kit.db.RerunOnConflictRoute`).
        """
        claims, user_id = self._verify_refresh(refresh_token)
        user = await self.users.get_for_share(user_id)
        if user is None or not user.is_active:
            raise InvalidRefreshToken()
        token_hash = hash_refresh_token(refresh_token)
        claimed = await self.refresh_tokens.claim(token_hash)
        if claimed is None:
            known = await self.refresh_tokens.lock_by_hash(token_hash)
            if known is not None and (known.used_at is not None or known.revoked_at is not None):
                await self.refresh_tokens.revoke_family(known.family_id)
                # The session's access tokens stop working too: the thief's and the victim's.
                await self.events.logged_out(
                    known.user_id, str(known.family_id), reason="refresh_token_reused"
                )
                security_event(
                    "refresh_token_reused",
                    user_id=known.user_id,
                    address=address,
                    session_id=str(known.family_id),
                )
                raise RefreshTokenReused()
            raise InvalidRefreshToken()
        if claimed.user_id != user.id:  # signed by us for its user: never, but never trusted
            raise InvalidRefreshToken()
        started = claims.get("sst")
        # Tokens issued before sessions had a recorded start count from their own issue.
        started_at = (
            datetime.fromtimestamp(started, UTC)
            if isinstance(started, int) and not isinstance(started, bool)
            else claimed.created_at
        )
        if self.issuer.session_ends_at(started_at) <= datetime.now(UTC):
            raise InvalidRefreshToken()
        return await self._issue(user, family_id=claimed.family_id, started_at=started_at)

    async def logout(self, refresh_token: str, *, address: str | None = None) -> None:
        """Revoke the session (the token's family) and its access tokens. Idempotent: an
        unknown, expired or already revoked token changes nothing, and the caller learns nothing
        from the answer. Like a reuse (`refresh`), it locks the presented token before the
        rest of its session."""
        known = await self.refresh_tokens.lock_by_hash(hash_refresh_token(refresh_token))
        if known is not None and await self.refresh_tokens.revoke_family(known.family_id):
            # Access tokens of this session carry its id (`sid`) and are refused from now on.
            await self.events.logged_out(known.user_id, str(known.family_id), reason="logout")
            security_event(
                "logged_out",
                user_id=known.user_id,
                address=address,
                session_id=str(known.family_id),
            )

    async def end_session(self, user_id: int, session_id: str | None) -> None:
        """Logout with only an access token: end the login session it names (its `sid`), for a
        client that lost its refresh token. The token was verified, so the session is the
        caller's; a token without a session id ends nothing."""
        if session_id is None:
            return
        try:
            family_id = uuid.UUID(session_id)
        except ValueError:
            return
        await self.refresh_tokens.revoke_family(family_id, user_id=user_id)
        # Also when no refresh token was left to revoke: the access tokens still work until
        # this event voids them.
        await self.events.logged_out(user_id, session_id, reason="logout")

    def _verify_refresh(self, token: str) -> tuple[dict[str, Any], int]:
        """A refresh token's claims and the user id it names; 401 unless it is one we could
        have issued (signature, expiry, type, subject)."""
        try:
            claims = decode_token(self.token_config, token, token_type="refresh")
            return claims, subject_id(claims)
        except (InvalidTokenError, ValueError) as exc:
            raise InvalidRefreshToken() from exc

    async def _issue(
        self, user: UserRow, *, family_id: uuid.UUID, started_at: datetime
    ) -> SessionTokens:
        now = datetime.now(UTC)
        ends_at = self.issuer.session_ends_at(started_at)
        refresh = self.issuer.refresh_token(user, session_started_at=started_at, now=now)
        await self.refresh_tokens.add(
            user_id=user.id,
            family_id=family_id,
            token_hash=refresh.token_hash,
            expires_at=refresh.expires_at,
        )
        access_ttl = self.issuer.access_ttl_until(ends_at, now=now)
        return SessionTokens(
            access_token=self.issuer.access_token(user, session_id=str(family_id), ttl=access_ttl),
            expires_in=max(1, int(access_ttl.total_seconds())),
            refresh_token=refresh.token,
            refresh_expires_at=refresh.expires_at,
            session_expires_at=ends_at,
        )
