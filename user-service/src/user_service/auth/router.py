"""Login, token refresh and logout (`/api/v1/auth/*`, login also as `/api/v1/users/login`)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Body, Depends, Request, status
from taskflow_kit.auth import current_principal, oauth2_scheme
from taskflow_kit.errors import Unauthorized, problem_responses

from user_service.auth.dependencies import AuthServiceDep, ClientAddressDep, LoginCredentialsDep
from user_service.auth.errors import (
    InvalidCredentials,
    InvalidRefreshToken,
    TooManyLoginFailures,
)
from user_service.auth.schemas import LoginRequest, RefreshRequest, TokenPair

router = APIRouter(tags=["auth"])

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


@router.post(
    "/api/v1/auth/login",
    response_model=TokenPair,
    responses=problem_responses(InvalidCredentials, TooManyLoginFailures),
    openapi_extra=_LOGIN_BODY,
)
@router.post(
    "/api/v1/users/login",
    response_model=TokenPair,
    responses=problem_responses(InvalidCredentials, TooManyLoginFailures),
    openapi_extra=_LOGIN_BODY,
)
async def login(
    credentials: LoginCredentialsDep, auth_service: AuthServiceDep, address: ClientAddressDep
) -> TokenPair:
    """Log in with username or email (any case) and password, as JSON or as the OAuth2
    password form. Returns a bearer access token and a refresh token.

    Unknown user, wrong password and deactivated account all give the same 401. Repeated
    failures for one account or from one address give 429 with `Retry-After`.
    """
    return await auth_service.login(credentials.username, credentials.password, address=address)


@router.post(
    "/api/v1/auth/refresh",
    response_model=TokenPair,
    responses=problem_responses(InvalidRefreshToken),
)
async def refresh(body: RefreshRequest, auth_service: AuthServiceDep) -> TokenPair:
    """Exchange a refresh token for a new pair. Each refresh token works once: presenting a
    used one again revokes every token of its login session (401)."""
    # RefreshTokenReused is a committing error: the family revocation stands although the
    # answer is 401.
    return await auth_service.refresh(body.refresh_token)


@router.post(
    "/api/v1/auth/logout",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=problem_responses(Unauthorized),
)
async def logout(
    request: Request,
    auth_service: AuthServiceDep,
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
        await auth_service.logout(body.refresh_token)
        return
    principal = await current_principal(request, token)
    await auth_service.end_session(principal.id, principal.session_id)
