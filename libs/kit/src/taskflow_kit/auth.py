"""Local validation of access tokens: every service checks the shared-secret JWT itself."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Request
from fastapi.security import OAuth2PasswordBearer

from taskflow_kit.errors import Forbidden, Unauthorized
from taskflow_kit.revocation import RevocationList, RevocationsIncomplete
from taskflow_kit.tokens import (
    InvalidTokenError,
    TokenConfig,
    decode_token,
    issued_at,
    subject_id,
)

# How long a request waits for a complete revocation map (being rebuilt) before its 503.
REVOCATIONS_WAIT = 2.0

# Swagger's "Authorize" posts the OAuth2 password form here (through the gateway or directly).
TOKEN_URL = "/api/v1/auth/login"

oauth2_scheme = OAuth2PasswordBearer(tokenUrl=TOKEN_URL, auto_error=False)


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling, as the access token says."""

    id: int
    username: str | None
    is_superuser: bool
    token: str
    session_id: str | None = None
    issued_at: float = 0.0
    expires_at: float = 0.0


def principal_from_token(
    config: TokenConfig, token: str, revocations: RevocationList | None = None
) -> Principal:
    """The caller named by a valid access token; Unauthorized for a malformed, forged, expired
    or revoked one (the revocation list is in memory: no I/O here)."""
    principal = _verified_principal(config, token)
    _refuse_if_revoked(principal, revocations)
    return principal


def _verified_principal(config: TokenConfig, token: str) -> Principal:
    """Signature, expiry, issuer, audience, type and subject checked; revocation not."""
    try:
        claims = decode_token(config, token, token_type="access")
        user_id = subject_id(claims)
        issued = issued_at(claims)
        expires_at = float(claims["exp"])
    except (InvalidTokenError, ValueError, TypeError) as exc:
        raise Unauthorized("Invalid or expired token") from exc
    session_id = claims.get("sid")
    return Principal(
        id=user_id,
        username=claims.get("username"),
        is_superuser=bool(claims.get("is_superuser", False)),
        token=token,
        session_id=str(session_id) if session_id is not None else None,
        issued_at=issued,
        expires_at=expires_at,
    )


def _refuse_if_revoked(principal: Principal, revocations: RevocationList | None) -> None:
    if revocations is not None and revocations.is_revoked(
        principal.id, principal.issued_at, principal.session_id
    ):
        raise Unauthorized("The token has been revoked; sign in again")


class TokenVerifier:
    """What the token check needs, given to the app once (`create_service_app`).

    A token whose signature and claims were verified is remembered until it expires, so a
    client's requests pay the HMAC and claim checks once per token, not once each; revocation
    is checked on every call, against the in-memory list. At most `cache_size` tokens are
    remembered (the memory is dropped wholesale when full: a refill costs one verification per
    active token)."""

    def __init__(
        self,
        config: TokenConfig,
        revocations: RevocationList | None = None,
        *,
        cache_size: int = 10_000,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.config = config
        self.revocations = revocations
        self.cache_size = cache_size
        self.clock = clock
        self._verified: dict[str, Principal] = {}

    def principal(self, token: str) -> Principal:
        """The caller of `token`; Unauthorized when it is invalid, expired or revoked."""
        principal = self._verified.get(token)
        if principal is None or principal.expires_at <= self.clock():
            self._verified.pop(token, None)
            principal = _verified_principal(self.config, token)
            if len(self._verified) >= self.cache_size:
                self._verified.clear()
            self._verified[token] = principal
        _refuse_if_revoked(principal, self.revocations)
        return principal


class AuthenticatingApp(FastAPI):
    """A FastAPI app that checks bearer tokens with its own `token_verifier` (what
    `taskflow_kit.app.create_service_app` builds): typed, present before any lifespan runs."""

    def __init__(self, *, token_verifier: TokenVerifier, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.token_verifier = token_verifier


async def current_principal(
    request: Request, token: Annotated[str | None, Depends(oauth2_scheme)]
) -> Principal:
    """The authenticated caller; 401 with `WWW-Authenticate: Bearer` otherwise, 503 while
    this process cannot yet tell whether the token was revoked (`RevocationsIncomplete`)."""
    if not token:
        raise Unauthorized("Not authenticated")
    app = request.app
    if not isinstance(app, AuthenticatingApp):
        raise TypeError("current_principal needs an app built by create_service_app")
    verifier = app.token_verifier
    principal = verifier.principal(token)
    revocations = verifier.revocations
    if revocations is not None and not revocations.complete:
        if not await revocations.wait_complete(REVOCATIONS_WAIT):
            raise RevocationsIncomplete()
        principal = verifier.principal(token)  # checked again, against the complete map
    return principal


async def claims_superuser(
    principal: Annotated[Principal, Depends(current_principal)],
) -> Principal:
    """The caller, if their access token claims administrator rights; 403 otherwise.

    This trusts the token's claim, so a demotion counts once the token is revoked or expires.
    A service that owns the accounts checks its database instead (user-service's
    `current_admin`)."""
    if not principal.is_superuser:
        raise Forbidden("Administrator rights are required")
    return principal


PrincipalDep = Annotated[Principal, Depends(current_principal)]
SuperuserClaimDep = Annotated[Principal, Depends(claims_superuser)]
