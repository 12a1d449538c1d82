"""Errors of the users domain (rendered as problem+json by the kit's handler)."""

from __future__ import annotations

from taskflow_kit.errors import BadRequest, Conflict, NotFound, Unauthorized


class EmailTaken(Conflict):
    def __init__(self) -> None:
        super().__init__("A user with this email already exists")


class UsernameTaken(Conflict):
    def __init__(self) -> None:
        super().__init__("A user with this username already exists")


class UserNotFound(NotFound):
    def __init__(self) -> None:
        super().__init__("User not found")


class InactiveOrUnknownUser(Unauthorized):
    """The token is valid but its user no longer exists or was deactivated."""

    def __init__(self) -> None:
        super().__init__("The account of this token is inactive or no longer exists")


class WrongCurrentPassword(BadRequest):
    def __init__(self) -> None:
        super().__init__("The current password is not correct")


class CurrentPasswordRequired(BadRequest):
    def __init__(self) -> None:
        super().__init__(
            "current_password is required to change the email or username or delete the account"
        )


class SelfLockout(Conflict):
    def __init__(self) -> None:
        super().__init__("Administrators cannot deactivate or demote themselves")
