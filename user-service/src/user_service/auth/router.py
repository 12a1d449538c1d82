"""Login, token refresh and logout (`/api/v1/auth/*`, login also as `/api/v1/users/login`)."""

from __future__ import annotations

from typing import Annotated

import asyncpg
from fastapi import APIRouter, Body, Depends, Request, Response, status
from taskflow_kit.auth import current_principal, oauth2_scheme
from taskflow_kit.db import ConnectionDep, RerunOnConflictRoute, in_transaction
from taskflow_kit.errors import Unauthorized, problem_responses

from user_service.auth.budgets import RouteBudgetExceeded, name_key
from user_service.auth.cookies import (
    SESSION_COOKIE,
    CrossSiteRequestRefused,
    cleared_session_cookie,
    set_session_cookie,
)
from user_service.auth.dependencies import (
    AuthServiceDep,
    AuthServiceOnConnectionDep,
    ClientAddressDep,
    LoginCredentialsDep,
    RouteBudgetsDep,
    SettingsDep,
    address_budget,
    browser_request,
)
from user_service.auth.errors import (
    InvalidCredentials,
    InvalidRefreshToken,
    RefreshTokenReused,
    TooManyLoginFailures,
)
from user_service.auth.schemas import BrowserSession, LoginRequest, RefreshRequest, TokenPair
from user_service.auth.service import AuthService, SessionTokens
from user_service.passwords import PasswordHashingBusy

router = APIRouter(tags=["auth"], route_class=RerunOnConflictRoute)

_LOGIN_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {"schema": LoginRequest.model_json_schema()},
            "application/x-www-form-urlencoded": {
                "schema": {
                    "type": "object",
                    "required": ["username", "password"],
                    "properties": {
                        "username": {"type": "string"},
                        "password": {"type": "string", "format": "password"},
                        "grant_type": {"type": "string", "enum": ["password"]},
                    },
                }
            },
        },
    }
}


_LOGIN_ERRORS = problem_responses(
    InvalidCredentials, TooManyLoginFailures, RouteBudgetExceeded, PasswordHashingBusy
)
_SESSION = [Depends(browser_request)]


def never_cache(response: Response) -> None:
    """Token responses must not be stored by a browser or a shared cache (RFC 6749 §5.1)."""
    response.headers["Cache-Control"] = "no-store"
    response.headers["Pragma"] = "no-cache"


@router.post(
    "/api/v1/auth/login",
    response_model=TokenPair,
    responses=_LOGIN_ERRORS,
    openapi_extra=_LOGIN_BODY,
    dependencies=[address_budget("login")],
)
@router.post(
    "/api/v1/users/login",
    response_model=TokenPair,
    responses=_LOGIN_ERRORS,
    openapi_extra=_LOGIN_BODY,
    dependencies=[address_budget("login")],
)
async def login(
    credentials: LoginCredentialsDep,
    auth_service: AuthServiceDep,
    address: ClientAddressDep,
    budgets: RouteBudgetsDep,
    response: Response,
) -> TokenPair:
    """Log in with username or email (any case) and password, as JSON or as the OAuth2
    password form. Returns a bearer access token and a refresh token.

    Unknown user, wrong password and deactivated account all give the same 401. Repeated
    failures make further tries on that account from that address wait a growing delay (429
    with `Retry-After`); too many requests per address or account also give 429.
    """
    await budgets.spend("login:account", name_key(credentials.username))
    tokens = await auth_service.login(credentials.username, credentials.password, address=address)
    never_cache(response)
    return tokens.pair()


async def rotate(
    auth_service: AuthService, connection: asyncpg.Connection, token: str, *, address: str
) -> SessionTokens:
    """`AuthService.refresh` in a transaction of its own, with its one effect that must outlive
    a failure: on reuse the token family's revocation (and its event) is committed before the
    401 is raised; any other failure rolls the transaction back (and a deadlock's victim is
    run again by the route, `RerunOnConflictRoute`). Like the request transaction
    (`taskflow_kit.db.get_transaction`) it runs on cached plans and commits before the
    response is sent."""
    async with in_transaction(connection, commit_despite=(RefreshTokenReused,)):
        return await auth_service.refresh(token, address=address)


@router.post(
    "/api/v1/auth/refresh",
    response_model=TokenPair,
    responses=problem_responses(InvalidRefreshToken, RouteBudgetExceeded),
    dependencies=[address_budget("refresh")],
)
async def refresh(
    body: RefreshRequest,
    auth_service: AuthServiceOnConnectionDep,
    connection: ConnectionDep,
    address: ClientAddressDep,
    response: Response,
) -> TokenPair:
    """Exchange a refresh token for a new pair. Each refresh token works once: presenting a
    used one again revokes every token of its login session (401). A session ends at its
    absolute end (`SESSION_MAX_LIFETIME_DAYS` after the login) however often it is refreshed."""
    tokens = await rotate(auth_service, connection, body.refresh_token, address=address)
    never_cache(response)
    return tokens.pair()


@router.post(
    "/api/v1/auth/logout",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=problem_responses(Unauthorized),
)
async def logout(
    request: Request,
    auth_service: AuthServiceDep,
    address: ClientAddressDep,
    token: Annotated[str | None, Depends(oauth2_scheme)],
    body: Annotated[RefreshRequest | None, Body()] = None,
) -> None:
    """End a login session: every refresh token rotated from the same login is revoked, and
    its access tokens stop working.

    With `{refresh_token}`: that token's session; always 204, also for an unknown or already
    revoked token (an access token sent beside it is not looked at). Without a body: the
    session of the bearer access token (for a client that lost its refresh token); 401 when
    there is no valid one."""
    if body is not None:
        await auth_service.logout(body.refresh_token, address=address)
        return
    principal = await current_principal(request, token)
    await auth_service.end_session(principal.id, principal.session_id)


# The web app's cookie session (docs/security.md): the same login, refresh and logout, but the
# refresh token lives in an HttpOnly cookie and never in the body. Opt-in by route, so the
# JSON routes above stay exactly as API clients know them.


@router.post(
    "/api/v1/auth/session",
    response_model=BrowserSession,
    responses={**_LOGIN_ERRORS, **problem_responses(CrossSiteRequestRefused)},
    openapi_extra=_LOGIN_BODY,
    dependencies=[*_SESSION, address_budget("login")],
)
async def open_session(
    credentials: LoginCredentialsDep,
    auth_service: AuthServiceDep,
    address: ClientAddressDep,
    budgets: RouteBudgetsDep,
    settings: SettingsDep,
    response: Response,
) -> BrowserSession:
    """Web app sign-in: like `POST /auth/login`, but the refresh token is set as an HttpOnly,
    SameSite=Strict cookie scoped to `/api/v1/auth`, and only the access token is returned.
    Requires the `X-Requested-With` header and a same-site `Origin` (403 otherwise)."""
    await budgets.spend("login:account", name_key(credentials.username))
    tokens = await auth_service.login(credentials.username, credentials.password, address=address)
    set_session_cookie(
        response,
        tokens.refresh_token,
        expires_at=tokens.refresh_expires_at,
        secure=settings.session_cookie_secure,
    )
    never_cache(response)
    return tokens.browser_session()


@router.post(
    "/api/v1/auth/session/refresh",
    response_model=BrowserSession,
    responses=problem_responses(InvalidRefreshToken, CrossSiteRequestRefused, RouteBudgetExceeded),
    dependencies=[*_SESSION, address_budget("refresh")],
)
async def refresh_session(
    auth_service: AuthServiceOnConnectionDep,
    connection: ConnectionDep,
    address: ClientAddressDep,
    settings: SettingsDep,
    request: Request,
    response: Response,
) -> BrowserSession:
    """Web app refresh: rotates the session cookie and returns a new access token. The page
    calls it on load (its access token lives in memory only). 401 clears the cookie."""
    secure = settings.session_cookie_secure
    token = request.cookies.get(SESSION_COOKIE)
    try:
        if not token:
            raise InvalidRefreshToken()
        tokens = await rotate(auth_service, connection, token, address=address)
    except (InvalidRefreshToken, RefreshTokenReused) as error:
        error.headers["set-cookie"] = cleared_session_cookie(secure=secure)
        raise
    set_session_cookie(
        response, tokens.refresh_token, expires_at=tokens.refresh_expires_at, secure=secure
    )
    never_cache(response)
    return tokens.browser_session()


@router.delete(
    "/api/v1/auth/session",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=problem_responses(CrossSiteRequestRefused),
    dependencies=_SESSION,
)
async def close_session(
    auth_service: AuthServiceDep,
    address: ClientAddressDep,
    settings: SettingsDep,
    request: Request,
    response: Response,
) -> None:
    """Web app sign-out: revokes the cookie's session and removes the cookie. Always 204."""
    token = request.cookies.get(SESSION_COOKIE)
    if token:
        await auth_service.logout(token, address=address)
    response.headers["set-cookie"] = cleared_session_cookie(secure=settings.session_cookie_secure)
