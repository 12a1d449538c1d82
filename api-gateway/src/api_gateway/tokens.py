"""Early rejection of bad bearer tokens, before any service is contacted.

Services still validate every token themselves (defence in depth); the gateway only spares
them requests that cannot succeed, and learns the user id for per-user rate limits. A revoked
token (deactivated, deleted, demoted, logged out) is refused here too, from the in-memory
revocation list: no call per request. A token's signature is verified once: the kit's
`TokenVerifier` remembers good tokens until they expire and checks revocation every time.
"""

from __future__ import annotations

from taskflow_kit.auth import Principal, TokenVerifier
from taskflow_kit.revocation import RevocationList
from taskflow_kit.tokens import TokenConfig


def bearer_credentials(authorization: bytes | str | None) -> str | None:
    """The credentials of an `Authorization: Bearer <credentials>` header (scheme matched
    case-insensitively, surrounding spaces dropped); None for no header or another scheme. The
    one place the gateway parses a bearer header."""
    if authorization is None:
        return None
    if isinstance(authorization, bytes):
        authorization = authorization.decode("latin-1")
    scheme, _, credentials = authorization.partition(" ")
    if scheme.lower() != "bearer":
        return None
    return credentials.strip()


class TokenGate:
    """Who the bearer token of a request names, through the kit's `TokenVerifier` (which the
    live updates share)."""

    def __init__(self, config: TokenConfig, revocations: RevocationList | None = None) -> None:
        self.config = config
        self.verifier = TokenVerifier(config, revocations)

    def principal(self, authorization: bytes | None) -> Principal | None:
        """The caller of a valid bearer token; None without one (the service decides);
        Unauthorized for a malformed, forged, expired, revoked or non-access token."""
        token = bearer_credentials(authorization)
        if token is None:
            return None
        return self.verifier.principal(token)

    def subject(self, authorization: bytes | None) -> str | None:
        """The user id of a valid bearer token (see `principal`)."""
        principal = self.principal(authorization)
        return None if principal is None else str(principal.id)

    def is_admin(self, authorization: bytes | None) -> bool:
        """Whether this is a valid access token (every check of `principal` applies) whose
        `is_superuser` claim is true."""
        principal = self.principal(authorization)
        return principal is not None and principal.is_superuser
