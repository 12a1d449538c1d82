"""Request and response bodies of the users domain.

Validation rules:
- username: 3..50 characters, ASCII letters, digits, `.`, `_`, `-` (never `@`, so a login
  identifier containing `@` can only be an email); unique case-insensitively.
- email: a syntactically valid address (no deliverability check); unique case-insensitively.
- password: 8..128 characters of any Unicode (lone surrogates and NUL excluded).
- full_name: up to 200 characters (NUL and lone surrogates excluded), or null.
Error messages never contain the submitted value.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Self

from email_validator import EmailNotValidError, validate_email
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator
from pydantic_core import PydanticCustomError

USERNAME_PATTERN = r"^[A-Za-z0-9._-]+$"
USERNAME_MIN, USERNAME_MAX = 3, 50
PASSWORD_MIN, PASSWORD_MAX = 8, 128
EMAIL_MAX = 320
FULL_NAME_MAX = 200


def storable_text(value: str) -> str:
    """Reject text PostgreSQL cannot store (NUL) or that is not Unicode (lone surrogates)."""
    if "\x00" in value:
        raise PydanticCustomError("string_nul", "must not contain NUL characters")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise PydanticCustomError("string_unicode", "must be valid Unicode text") from None
    return value


def valid_email(value: str) -> str:
    try:
        return validate_email(value, check_deliverability=False).normalized
    except EmailNotValidError:
        # email-validator's own messages quote parts of the input: keep ours generic.
        raise PydanticCustomError("email", "value is not a valid email address") from None


StorableText = Annotated[str, AfterValidator(storable_text)]
Email = Annotated[
    str,
    Field(max_length=EMAIL_MAX, json_schema_extra={"format": "email"}),
    AfterValidator(storable_text),
    AfterValidator(valid_email),
]
Username = Annotated[
    str, Field(min_length=USERNAME_MIN, max_length=USERNAME_MAX, pattern=USERNAME_PATTERN)
]
Password = Annotated[
    str, Field(min_length=PASSWORD_MIN, max_length=PASSWORD_MAX), AfterValidator(storable_text)
]
FullName = Annotated[str, Field(max_length=FULL_NAME_MAX), AfterValidator(storable_text)]


class UserCreate(BaseModel):
    """Registration body. Unknown fields (id, is_superuser, ...) are rejected."""

    model_config = ConfigDict(extra="forbid")

    email: Email
    username: Username
    password: Password
    full_name: FullName | None = None


CurrentPassword = Annotated[
    str | None,
    Field(
        max_length=4096,
        description="The caller's password: required to change email or username",
    ),
]


class UserUpdate(BaseModel):
    """`PATCH /users/me`: any of these; email and username may not be set to null. Changing
    the email or username also needs `current_password`."""

    model_config = ConfigDict(extra="forbid")

    email: Email | None = None
    username: Username | None = None
    full_name: FullName | None = None
    current_password: CurrentPassword = None

    @model_validator(mode="after")
    def _required_fields_not_null(self) -> Self:
        for name in ("email", "username"):
            if name in self.model_fields_set and getattr(self, name) is None:
                raise PydanticCustomError("not_null", "email and username cannot be null")
        return self


class PasswordChange(BaseModel):
    model_config = ConfigDict(extra="forbid")

    current_password: str = Field(max_length=4096)
    new_password: Password


class AccountDeletion(BaseModel):
    """`DELETE /users/me` body: the caller's password, to confirm it is really them."""

    model_config = ConfigDict(extra="forbid")

    current_password: str = Field(max_length=4096)


class AdminUserUpdate(BaseModel):
    """`PATCH /users/{id}` by an administrator."""

    model_config = ConfigDict(extra="forbid")

    is_active: bool | None = None
    is_superuser: bool | None = None

    @model_validator(mode="after")
    def _not_null(self) -> Self:
        for name in ("is_active", "is_superuser"):
            if name in self.model_fields_set and getattr(self, name) is None:
                raise PydanticCustomError("not_null", "is_active and is_superuser cannot be null")
        return self


class UserRead(BaseModel):
    """A full user record (the user themself, or an administrator, sees this)."""

    model_config = ConfigDict(from_attributes=True)

    id: int
    email: str
    username: str
    full_name: str | None
    is_active: bool
    is_superuser: bool
    created_at: datetime
    updated_at: datetime


class UserPublic(BaseModel):
    """What any signed-in user may see of another: enough to pick an assignee."""

    model_config = ConfigDict(from_attributes=True)

    id: int
    username: str
    full_name: str | None
    is_active: bool
