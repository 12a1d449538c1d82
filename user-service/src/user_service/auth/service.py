"""Login, refresh-token rotation and logout."""

from __future__ import annotations

import uuid

from sqlalchemy.ext.asyncio import AsyncSession
from taskflow_kit.outbox import Outbox
from taskflow_kit.tokens import InvalidTokenError, TokenConfig, decode_token

from user_service.auth.errors import InvalidCredentials, InvalidRefreshToken, RefreshTokenReused
from user_service.auth.issuing import TokenIssuer, hash_refresh_token
from user_service.auth.models import RefreshToken
from user_service.auth.repository import RefreshTokenRepository
from user_service.auth.schemas import TokenPair
from user_service.auth.throttle import LoginThrottle, account_key
from user_service.events import UserEvents
from user_service.passwords import PasswordHasher
from user_service.users.models import User
from user_service.users.repository import UserRepository
from user_service.users.schemas import PASSWORD_MAX


class AuthService:
    def __init__(
        self,
        session: AsyncSession,
        *,
        hasher: PasswordHasher,
        throttle: LoginThrottle,
        issuer: TokenIssuer,
        outbox: Outbox,
    ) -> None:
        self.users = UserRepository(session)
        self.refresh_tokens = RefreshTokenRepository(session)
        self.events = UserEvents(session, outbox)
        self.hasher = hasher
        self.throttle = throttle
        self.issuer = issuer

    @property
    def token_config(self) -> TokenConfig:
        return self.issuer.config

    async def authenticate(self, identifier: str, password: str, *, address: str) -> User:
        """The active user with these credentials; 401 otherwise, 429 after too many failures.

        The attempt is reserved (counted) before the slow password check and given back on
        success, so parallel guesses cannot all slip under the limit.
        """
        await self.throttle.reserve_address(address)
        user = await self.users.get_by_login(identifier)
        account = account_key(identifier, user)
        await self.throttle.reserve_account(account, address=address)

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
            raise InvalidCredentials()
        # The flags the token will claim, read again under a share lock (see get_for_share).
        user = await self.users.get_for_share(user.id)
        if user is None or not user.is_active:
            raise InvalidCredentials()

        await self.throttle.succeeded(account=account, address=address)
        if self.hasher.needs_rehash(user.hashed_password):
            user.hashed_password = await self.hasher.hash(password)
            await self.users.flush()
        return user

    async def login(self, identifier: str, password: str, *, address: str) -> TokenPair:
        user = await self.authenticate(identifier, password, address=address)
        return await self._issue_pair(user, family_id=uuid.uuid4())

    async def refresh(self, refresh_token: str) -> TokenPair:
        """Rotate: the presented token is spent and a new pair (same family) returned.

        A token that is already used or revoked is reuse (possibly a stolen copy), so the whole
        family is revoked: neither the thief nor the victim can continue without logging in.
        That includes two concurrent refreshes of one token: one wins, the other is reuse.
        """
        self._verify_refresh_signature(refresh_token)
        token_hash = hash_refresh_token(refresh_token)
        claimed = await self.refresh_tokens.claim(token_hash)
        if claimed is None:
            known = await self.refresh_tokens.get_by_hash(token_hash)
            if known is not None and (known.used_at is not None or known.revoked_at is not None):
                await self.refresh_tokens.revoke_family(known.family_id)
                # The session's access tokens stop working too: the thief's and the victim's.
                await self.events.logged_out(
                    known.user_id, str(known.family_id), reason="refresh_token_reused"
                )
                raise RefreshTokenReused()
            raise InvalidRefreshToken()
        user = await self.users.get_for_share(claimed.user_id)
        if user is None or not user.is_active:
            raise InvalidRefreshToken()
        return await self._issue_pair(user, family_id=claimed.family_id)

    async def logout(self, refresh_token: str) -> None:
        """Revoke the session (the token's family) and its access tokens. Idempotent: an
        unknown, expired or already revoked token changes nothing, and the caller learns nothing
        from the answer."""
        known = await self.refresh_tokens.get_by_hash(hash_refresh_token(refresh_token))
        if known is not None and await self.refresh_tokens.revoke_family(known.family_id):
            # Access tokens of this session carry its id (`sid`) and are refused from now on.
            await self.events.logged_out(known.user_id, str(known.family_id), reason="logout")

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

    def _verify_refresh_signature(self, token: str) -> None:
        try:
            decode_token(self.token_config, token, token_type="refresh")
        except InvalidTokenError as exc:
            raise InvalidRefreshToken() from exc

    async def _issue_pair(self, user: User, *, family_id: uuid.UUID) -> TokenPair:
        refresh = self.issuer.refresh_token(user)
        await self.refresh_tokens.add(
            RefreshToken(
                user_id=user.id,
                family_id=family_id,
                token_hash=refresh.token_hash,
                expires_at=refresh.expires_at,
            )
        )
        return TokenPair(
            access_token=self.issuer.access_token(user, session_id=str(family_id)),
            expires_in=int(self.issuer.access_ttl.total_seconds()),
            refresh_token=refresh.token,
        )
