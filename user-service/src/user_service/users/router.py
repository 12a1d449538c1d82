"""Accounts: registration, the caller's own account, the user directory and administration.

Every route is served under both spellings the contract names (`/api/v1/auth/...` and
`/api/v1/users/...`, with and without the trailing slash); the slash-less duplicates are hidden
from the schema.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, Response, status
from starlette.convertors import Convertor, register_url_convertor
from taskflow_kit.app import add_slashless_aliases
from taskflow_kit.auth import PrincipalDep
from taskflow_kit.db import RerunOnConflictRoute
from taskflow_kit.errors import Forbidden, Unauthorized, problem_responses

from user_service.auth.budgets import RouteBudgetExceeded
from user_service.auth.dependencies import (
    ClientAddressDep,
    LoginThrottleDep,
    RouteBudgetsDep,
    address_budget,
)
from user_service.auth.errors import TooManyLoginFailures
from user_service.passwords import PasswordHashingBusy
from user_service.users.dependencies import (
    CurrentAdminDep,
    CurrentUserDep,
    CurrentUserInTransactionDep,
    UserReaderDep,
    UserWriterDep,
)
from user_service.users.errors import (
    CurrentPasswordRequired,
    EmailTaken,
    SelfLockout,
    UserNotFound,
    WrongCurrentPassword,
)
from user_service.users.models import BIGINT_MAX
from user_service.users.schemas import (
    AccountDeletion,
    AdminUserUpdate,
    PasswordChange,
    StorableText,
    UserCreate,
    UserPublic,
    UserRead,
    UserUpdate,
)


class NumberConvertor(Convertor[str]):
    """A path segment that is an integer, handed on as text for the route to validate."""

    regex = "-?[0-9]+"

    def convert(self, value: str) -> str:
        return value

    def to_string(self, value: str) -> str:
        return str(value)


register_url_convertor("number", NumberConvertor())


router = APIRouter(tags=["users"], route_class=RerunOnConflictRoute)

UserId = Annotated[int, Path(ge=1, le=BIGINT_MAX, description="The user's numeric id")]

_AUTHENTICATED = problem_responses(Unauthorized)
_REAUTHENTICATED = problem_responses(
    Unauthorized, CurrentPasswordRequired, WrongCurrentPassword, TooManyLoginFailures
)
_REGISTER = [address_budget("register")]


@router.post(
    "/api/v1/auth/register",
    status_code=status.HTTP_201_CREATED,
    response_model=UserRead,
    responses=problem_responses(EmailTaken, RouteBudgetExceeded, PasswordHashingBusy),
    dependencies=_REGISTER,
)
@router.post(
    "/api/v1/users/",
    status_code=status.HTTP_201_CREATED,
    response_model=UserRead,
    responses=problem_responses(EmailTaken, RouteBudgetExceeded, PasswordHashingBusy),
    dependencies=_REGISTER,
)
async def register(body: UserCreate, user_service: UserWriterDep, response: Response) -> UserRead:
    """Create an account. Email and username must be unused (compared ignoring case): 409
    otherwise. Unknown fields are rejected (422)."""
    user = await user_service.register(body)
    response.headers["Location"] = f"/api/v1/users/{user.id}"
    return UserRead.model_validate(user)


@router.get("/api/v1/auth/me", response_model=UserRead, responses=_AUTHENTICATED)
@router.get("/api/v1/users/me", response_model=UserRead, responses=_AUTHENTICATED)
async def read_me(user: CurrentUserDep) -> UserRead:
    """The caller's own account."""
    return UserRead.model_validate(user)


@router.patch(
    "/api/v1/users/me",
    response_model=UserRead,
    responses={**_REAUTHENTICATED, **problem_responses(EmailTaken)},
)
async def update_me(
    body: UserUpdate,
    user: CurrentUserInTransactionDep,
    principal: PrincipalDep,
    user_service: UserWriterDep,
    address: ClientAddressDep,
    throttle: LoginThrottleDep,
) -> UserRead:
    """Change the caller's full name, email or username (409 if the new email or username is
    taken). A new email or username also needs `current_password` (400 when it is missing or
    wrong); a new email signs out every other session of the account."""
    updated = await user_service.update_profile(
        user, body, session_id=principal.session_id, address=address, throttle=throttle
    )
    return UserRead.model_validate(updated)


@router.post(
    "/api/v1/users/me/password",
    status_code=status.HTTP_204_NO_CONTENT,
    responses={**_REAUTHENTICATED, **problem_responses(RouteBudgetExceeded)},
    dependencies=[address_budget("password")],
)
async def change_password(
    body: PasswordChange,
    user: CurrentUserInTransactionDep,
    user_service: UserWriterDep,
    throttle: LoginThrottleDep,
    address: ClientAddressDep,
    budgets: RouteBudgetsDep,
) -> None:
    """Change the caller's password. A wrong current password is 400 (not 401: the caller's
    token is fine). Every refresh token of the user is revoked: other sessions must log in
    again."""
    await budgets.spend("password:account", str(user.id))
    await user_service.change_password(
        user,
        current=body.current_password,
        new=body.new_password,
        address=address,
        throttle=throttle,
    )


@router.delete(
    "/api/v1/users/me", status_code=status.HTTP_204_NO_CONTENT, responses=_REAUTHENTICATED
)
async def delete_me(
    body: AccountDeletion,
    user: CurrentUserInTransactionDep,
    user_service: UserWriterDep,
    throttle: LoginThrottleDep,
    address: ClientAddressDep,
) -> None:
    """Delete the caller's account for good, with its sessions. The body must carry the
    caller's password, `{"current_password": ...}` (422 without it, 400 when wrong). The email
    and username may be registered again; the numeric id is never reused."""
    await user_service.delete(
        user, current_password=body.current_password, address=address, throttle=throttle
    )


@router.get(
    "/api/v1/users/",
    response_model=list[UserRead] | list[UserPublic],
    responses=_AUTHENTICATED,
)
async def list_users(
    user: CurrentUserDep,
    user_service: UserReaderDep,
    q: Annotated[StorableText | None, Query(max_length=100)] = None,
    skip: Annotated[int, Query(ge=0, le=BIGINT_MAX)] = 0,
    limit: Annotated[int, Query(ge=1, le=100)] = 50,
) -> list[UserRead] | list[UserPublic]:
    """The user directory, ordered by username: public profiles of active users whose
    username or full name contains `q` (ignoring case). Administrators get full records,
    inactive users too, and their `q` also searches emails."""
    users = await user_service.directory(
        q=q, skip=skip, limit=limit, include_inactive=user.is_superuser
    )
    if user.is_superuser:
        return [UserRead.model_validate(found) for found in users]
    return [UserPublic.model_validate(found) for found in users]


# `{user_id:number}`: only a number is a user id, so `/users/login` and `/users/me` are never
# read as one (another method there is 405 with `Allow`, not this route's 401/403/422), while
# `0`, `-1` or a number past bigint still reach the route and its 422.
@router.get(
    "/api/v1/users/{user_id:number}",
    response_model=UserRead | UserPublic,
    responses=problem_responses(Unauthorized, UserNotFound),
)
async def read_user(
    user_id: UserId, user: CurrentUserDep, user_service: UserReaderDep
) -> UserRead | UserPublic:
    """One user's public profile (`is_active` false for a deactivated account; 404 if there
    is no such user). Administrators get the full record."""
    found = await user_service.get(user_id)
    if user.is_superuser:
        return UserRead.model_validate(found)
    return UserPublic.model_validate(found)


@router.patch(
    "/api/v1/users/{user_id:number}",
    response_model=UserRead,
    responses=problem_responses(Unauthorized, Forbidden, UserNotFound, SelfLockout),
)
async def administer_user(
    user_id: UserId,
    body: AdminUserUpdate,
    admin: CurrentAdminDep,
    user_service: UserWriterDep,
    address: ClientAddressDep,
) -> UserRead:
    """Administrators only: activate or deactivate a user (deactivation ends their sessions),
    grant or revoke administrator rights. Admins cannot lock themselves out (409)."""
    return UserRead.model_validate(
        await user_service.administer(admin, user_id, body, address=address)
    )


add_slashless_aliases(router)
