"""Account rules: registration, profile changes, password change, deletion, administration."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from taskflow_kit.outbox import Outbox

from user_service.auth.repository import RefreshTokenRepository
from user_service.auth.throttle import LoginThrottle, account_key
from user_service.events import UserEvents
from user_service.passwords import PasswordHasher
from user_service.users.errors import (
    EmailTaken,
    SelfLockout,
    UsernameTaken,
    UserNotFound,
    WrongCurrentPassword,
)
from user_service.users.models import EMAIL_UNIQUE_INDEX, USERNAME_UNIQUE_INDEX, User
from user_service.users.repository import UserRepository
from user_service.users.schemas import AdminUserUpdate, UserCreate, UserUpdate


@contextmanager
def _uniqueness_conflicts() -> Iterator[None]:
    """Turn a unique-index violation on email or username into a 409.

    The pre-check gives a clear answer in the common case; the unique indexes are what decide
    between concurrent requests that both passed it.
    """
    try:
        yield
    except IntegrityError as exc:
        # asyncpg's UniqueViolationError (the DBAPI error's cause) names the index.
        constraint = getattr(getattr(exc.orig, "__cause__", None), "constraint_name", None)
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
    def for_session(
        cls, session: AsyncSession, *, outbox: Outbox, hasher: PasswordHasher
    ) -> UserService:
        """The service over one request's (or command's) transaction."""
        return cls(
            users=UserRepository(session),
            refresh_tokens=RefreshTokenRepository(session),
            events=UserEvents(session, outbox),
            hasher=hasher,
        )

    async def register(self, data: UserCreate) -> User:
        await self._ensure_available(email=data.email, username=data.username)
        user = User(
            email=data.email,
            username=data.username,
            full_name=data.full_name,
            hashed_password=await self.hasher.hash(data.password),
        )
        with _uniqueness_conflicts():
            await self.users.add(user)
        await self.events.registered(user)
        return user

    async def update_profile(self, user: User, data: UserUpdate) -> User:
        changes = data.model_dump(exclude_unset=True)
        await self._ensure_available(
            email=changes.get("email"), username=changes.get("username"), exclude_id=user.id
        )
        changed = {
            field: value for field, value in changes.items() if getattr(user, field) != value
        }
        for field, value in changed.items():
            setattr(user, field, value)
        with _uniqueness_conflicts():
            await self.users.flush()
        if changed:
            await self.events.updated(user, revoke_tokens=False)
        return user

    async def change_password(
        self, user: User, *, current: str, new: str, throttle: LoginThrottle
    ) -> None:
        """Check the current password (guessing it is throttled like a login), set the new one
        and end every session: all refresh tokens of the user are revoked, and the access tokens
        issued so far stop working (`user.sessions_revoked`)."""
        account = account_key(user.username, user)
        await throttle.check_account(account)
        if not await self.hasher.verify(current, user.hashed_password):
            await throttle.record_failure(account=account, address=None)
            raise WrongCurrentPassword()
        user.hashed_password = await self.hasher.hash(new)
        await self.users.flush()
        await self.refresh_tokens.revoke_all_for_user(user.id)
        await self.events.sessions_revoked(user.id, reason="password_changed")

    async def delete(self, user: User) -> None:
        """Hard delete: the row and (by cascade) its refresh tokens go; ids are never reused.
        Every token of the user stops working, and task-service removes their tasks
        (`user.deleted`)."""
        user_id = user.id
        await self.users.delete(user)
        await self.events.deleted(user_id)

    async def get(self, user_id: int) -> User:
        user = await self.users.get(user_id)
        if user is None:
            raise UserNotFound()
        return user

    async def directory(
        self, *, q: str | None, skip: int, limit: int, include_inactive: bool
    ) -> Sequence[User]:
        return await self.users.directory(
            q=q, skip=skip, limit=limit, include_inactive=include_inactive
        )

    async def administer(self, actor: User, user_id: int, data: AdminUserUpdate) -> User:
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
        for field, value in changed.items():
            setattr(user, field, value)
        await self.users.flush()
        if changed.get("is_active") is False:
            await self.refresh_tokens.revoke_all_for_user(user.id)
        if changed:
            # Tokens carry the admin flag and are only issued to active users: a change of
            # either voids the tokens issued before it (the event is written after the row
            # lock is held, so a concurrent login's token is older than the event).
            await self.events.updated(user, revoke_tokens=True)
        return user

    async def make_admin(self, identifier: str) -> User:
        """Grant admin rights to the user with this username or email (used by the CLI)."""
        user = await self.users.get_by_login(identifier)
        if user is None:
            raise UserNotFound()
        changed = not (user.is_superuser and user.is_active)
        user.is_superuser = True
        user.is_active = True
        await self.users.flush()
        if changed:
            await self.events.updated(user, revoke_tokens=True)
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
