"""Domain errors of the projects API (rendered as problem+json by the kit's handler)."""

from __future__ import annotations

from taskflow_kit.errors import Conflict, Forbidden, NotFound, PreconditionFailed

from task_service.tasks.errors import AssigneeNotActive


class ProjectNotFound(NotFound):
    """Missing, or the caller is not a member: the two are indistinguishable on purpose."""

    def __init__(self, project_id: int) -> None:
        super().__init__(f"Project {project_id} not found")


class ProjectRoleRequired(Forbidden):
    """The caller is a member, but their role does not allow this."""

    def __init__(self, action: str, roles: str) -> None:
        super().__init__(f"Only the project's {roles} may {action}")


class OwnerCannotBeRemoved(Forbidden):
    def __init__(self) -> None:
        super().__init__(
            "The project's owner cannot be removed or leave; the owner may delete the project"
        )


class AlreadyMember(Conflict):
    def __init__(self, project_id: int, user_id: int) -> None:
        super().__init__(f"User {user_id} is already a member of project {project_id}")


class MemberNotFound(NotFound):
    def __init__(self, project_id: int, user_id: int) -> None:
        super().__init__(f"User {user_id} is not a member of project {project_id}")


class MemberNotActive(AssigneeNotActive):
    """The user to add is not an active account (422, pointing at `user_id`)."""

    def __init__(self, user_id: int) -> None:
        super().__init__(user_id)
        self.extra["errors"] = [
            {"loc": ["body", "user_id"], "msg": "not an active user", "type": "value_error"}
        ]


class ProjectVersionMismatch(PreconditionFailed):
    def __init__(self, current_version: int) -> None:
        super().__init__(
            "The project has changed since the version named in If-Match",
            extra={"current_version": current_version},
        )
