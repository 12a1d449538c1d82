"""Request and response bodies of login, refresh and logout."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from user_service.users.schemas import EMAIL_MAX, StorableText


class LoginRequest(BaseModel):
    """Login by username or email (any case). The password has no upper bound here: a long
    one simply does not match (401), it is never a validation error."""

    username: StorableText = Field(min_length=1, max_length=EMAIL_MAX)
    password: str = Field(min_length=1)


class RefreshRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    refresh_token: str = Field(min_length=1, max_length=4096)


class TokenPair(BaseModel):
    access_token: str
    token_type: Literal["bearer"] = "bearer"
    expires_in: int = Field(description="Seconds until the access token expires")
    refresh_token: str


class BrowserSession(BaseModel):
    """The web app's cookie session: the access token only (held in memory by the page); the
    refresh token travels in an HttpOnly cookie the page cannot read."""

    access_token: str
    token_type: Literal["bearer"] = "bearer"
    expires_in: int = Field(description="Seconds until the access token expires")
    session_expires_at: datetime = Field(
        description="The session's absolute end: no refresh extends it; sign in again then"
    )
