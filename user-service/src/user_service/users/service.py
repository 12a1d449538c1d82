"""Account rules: registration, profile changes, password change, deletion, administration."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import asyncpg
from taskflow_kit.dberrors import constraint_name
from taskflow_kit.outbox import Outbox

from user_service.auth.errors import TooManyLoginFailures
from user_service.auth.repository import RefreshTokenRepository
from user_service.auth.throttle import LoginThrottle, account_key
from user_service.passwords import PasswordHasher
from user_service.security_log import security_event
from user_service.users.errors import (
    CurrentPasswordRequired,
    EmailTaken,
    SelfLockout,
    UsernameTaken,
    UserNotFound,
    WrongCurrentPassword,
)
from user_service.users.events import UserEvents
from user_service.users.models import EMAIL_UNIQUE_INDEX, USERNAME_UNIQUE_INDEX
from user_service.users.repository import UserRepository, UserRow
from user_service.users.schemas import AdminUserUpdate, UserCreate, UserUpdate


@contextmanager
def _uniqueness_conflicts() -> Iterator[None]:
    """Turn a unique-index violation on email or username into a 409.

    The pre-check gives a clear answer in the common case; the unique indexes are what decide
    between concurrent requests that both passed it.
    """
    try:
        yield
    except asyncpg.UniqueViolationError as exc:
        constraint = constraint_name(exc)
        if constraint == EMAIL_UNIQUE_INDEX:
            raise EmailTaken() from exc
        if constraint == USERNAME_UNIQUE_INDEX:
            raise UsernameTaken() from exc
        raise


class UserService:
    """Account rules over the repositories it is given; every change records its event."""

    def __init__(
        self,
        *,
        users: UserRepository,
        refresh_tokens: RefreshTokenRepository,
        events: UserEvents,
        hasher: PasswordHasher,
    ) -> None:
        self.users = users
        self.refresh_tokens = refresh_tokens
        self.events = events
        self.hasher = hasher

    @classmethod
    def for_connection(
        cls, connection: asyncpg.Connection, *, outbox: Outbox, hasher: PasswordHasher
    ) -> UserService:
        """The service over one connection: a request's (in its transaction when it writes)
        or a command's."""
        return cls(
            users=UserRepository(connection),
            refresh_tokens=RefreshTokenRepository(connection),
            events=UserEvents(connection, outbox),
            hasher=hasher,
        )

    async def register(self, data: UserCreate) -> UserRow:
        await self._ensure_available(email=data.email, username=data.username)
        hashed_password = await self.hasher.hash(data.password)
        with _uniqueness_conflicts():
            user = await self.users.insert(
                email=data.email,
                username=data.username,
                full_name=data.full_name,
                hashed_password=hashed_password,
            )
        await self.events.registered(user)
        return user

    async def reauthenticate(
        self, user: UserRow, password: str | None, *, address: str, throttle: LoginThrottle
    ) -> None:
        """Check the signed-in caller's password before a sensitive change. Guessing it is
        throttled exactly like a login (same counters: failures here delay logins too)."""
        if password is None:
            raise CurrentPasswordRequired()
        try:
            attempt = await throttle.attempt(
                account=account_key(user.username, user), address=address
            )
        except TooManyLoginFailures:
            security_event("login_throttled", user_id=user.id, address=address, during="reauth")
            raise
        if not await self.hasher.verify(password, user.hashed_password):
            security_event("reauthentication_failed", user_id=user.id, address=address)
            raise WrongCurrentPassword()
        await throttle.succeeded(attempt)

    async def update_profile(
        self,
        user: UserRow,
        data: UserUpdate,
        *,
        session_id: str | None,
        address: str,
        throttle: LoginThrottle,
    ) -> UserRow:
        """Change name, email or username. A new email or username needs the current password;
        a new email also ends every other session of the user (whoever controlled the old
        address may have signed in elsewhere with it)."""
        changes = data.model_dump(exclude_unset=True, exclude={"current_password"})
        changed = {
            field: value for field, value in changes.items() if getattr(user, field) != value
        }
        if "email" in changed or "username" in changed:
            await self.reauthenticate(
                user, data.current_password, address=address, throttle=throttle
            )
        await self._ensure_available(
            email=changed.get("email"), username=changed.get("username"), exclude_id=user.id
        )
        if not changed:
            return user
        with _uniqueness_conflicts():
            user = await self._change(user.id, changed)
        await self.events.updated(user, revoke_tokens=False)
        if "email" in changed:
            await self._end_other_sessions(user.id, keep=session_id, reason="email_changed")
            security_event("email_changed", user_id=user.id, address=address)
        if "username" in changed:
            security_event("username_changed", user_id=user.id, address=address)
        return user

    async def change_password(
        self, user: UserRow, *, current: str, new: str, address: str, throttle: LoginThrottle
    ) -> None:
        """Check the current password (guessing it is throttled like a login), set the new one
        and end every session: all refresh tokens of the user are revoked, and the access tokens
        issued so far stop working (`user.sessions_revoked`)."""
        await self.reauthenticate(user, current, address=address, throttle=throttle)
        await self._change(user.id, {"hashed_password": await self.hasher.hash(new)})
        await self.refresh_tokens.revoke_all_for_user(user.id)
        await self.events.sessions_revoked(user.id, reason="password_changed")
        security_event("password_changed", user_id=user.id, address=address)

    async def delete(
        self, user: UserRow, *, current_password: str, address: str, throttle: LoginThrottle
    ) -> None:
        """Hard delete, after the password check: the row and (by cascade) its refresh tokens
        go; ids are never reused. Every token of the user stops working, and task-service
        removes their tasks (`user.deleted`)."""
        await self.reauthenticate(user, current_password, address=address, throttle=throttle)
        await self.users.delete(user.id)
        await self.events.deleted(user.id)
        security_event("account_deleted", user_id=user.id, address=address)

    async def _end_other_sessions(self, user_id: int, *, keep: str | None, reason: str) -> None:
        try:
            kept = uuid.UUID(keep) if keep else None
        except ValueError:
            kept = None
        for family_id in await self.refresh_tokens.revoke_other_families(user_id, keep=kept):
            await self.events.logged_out(user_id, str(family_id), reason=reason)

    async def get(self, user_id: int) -> UserRow:
        user = await self.users.get(user_id)
        if user is None:
            raise UserNotFound()
        return user

    async def directory(
        self, *, q: str | None, skip: int, limit: int, include_inactive: bool
    ) -> list[UserRow]:
        return await self.users.directory(
            q=q, skip=skip, limit=limit, include_inactive=include_inactive
        )

    async def administer(
        self, actor: UserRow, user_id: int, data: AdminUserUpdate, *, address: str | None = None
    ) -> UserRow:
        """Activate/deactivate or grant/revoke admin. Deactivation ends the user's sessions."""
        user = await self.get(user_id)
        changes = data.model_dump(exclude_unset=True)
        if user.id == actor.id and (
            changes.get("is_active") is False or changes.get("is_superuser") is False
        ):
            raise SelfLockout()
        changed = {
            field: value for field, value in changes.items() if getattr(user, field) != value
        }
        if not changed:
            return user
        user = await self._change(user.id, changed)
        if changed.get("is_active") is False:
            await self.refresh_tokens.revoke_all_for_user(user.id)
        # Tokens carry the admin flag and are only issued to active users: a change of either
        # voids the tokens issued before it (the event is written after the row lock is held,
        # so a concurrent login's token is older than the event).
        await self.events.updated(user, revoke_tokens=True)
        security_event(
            "admin_changed_user", user_id=user.id, address=address, actor_id=actor.id, **changed
        )
        return user

    async def make_admin(self, identifier: str) -> UserRow:
        """Grant admin rights to the user with this username or email (used by the CLI)."""
        user = await self.users.get_by_login(identifier)
        if user is None:
            raise UserNotFound()
        if user.is_superuser and user.is_active:
            return user
        user = await self._change(user.id, {"is_superuser": True, "is_active": True})
        await self.events.updated(user, revoke_tokens=True)
        security_event("admin_granted_from_cli", user_id=user.id, address=None)
        return user

    async def _change(self, user_id: int, values: dict[str, Any]) -> UserRow:
        """Write `values` to the account; the row as changed. The account was read in this
        transaction, so it is gone only if a concurrent deletion committed since: 404."""
        user = await self.users.update(user_id, values)
        if user is None:
            raise UserNotFound()
        return user

    async def _ensure_available(
        self, *, email: str | None, username: str | None, exclude_id: int | None = None
    ) -> None:
        email_taken, username_taken = await self.users.taken_fields(
            email=email, username=username, exclude_id=exclude_id
        )
        if email_taken:
            raise EmailTaken()
        if username_taken:
            raise UsernameTaken()
