"""Errors of the auth domain."""

from __future__ import annotations

from taskflow_kit.errors import TooManyRequests, Unauthorized


class InvalidCredentials(Unauthorized):
    """One message for unknown user, wrong password and inactive user: no account oracle."""

    def __init__(self) -> None:
        super().__init__("Incorrect username or password")


class InvalidRefreshToken(Unauthorized):
    def __init__(self) -> None:
        super().__init__("Invalid or expired refresh token")


class RefreshTokenReused(Unauthorized):
    """A rotated (or revoked) refresh token came back: its whole family is now revoked
    (committed before this is raised, see `auth.router.rotate`)."""

    def __init__(self) -> None:
        super().__init__("Refresh token reuse detected; please log in again")


class TooManyLoginFailures(TooManyRequests):
    def __init__(self, *, retry_after: int) -> None:
        super().__init__("Too many failed login attempts; try again later", retry_after=retry_after)
