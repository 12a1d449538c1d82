"""Domain errors of the tasks API (rendered as problem+json by the kit's handler)."""

from __future__ import annotations

from collections.abc import Sequence

from taskflow_kit.errors import (
    Conflict,
    Forbidden,
    NotFound,
    PreconditionFailed,
    ServiceUnavailable,
    UnprocessableEntity,
)


class TaskNotFound(NotFound):
    """Missing, or not visible to the caller: the two are indistinguishable on purpose."""

    def __init__(self, task_id: int) -> None:
        super().__init__(f"Task {task_id} not found")


class OwnerOnly(Forbidden):
    """The caller sees the task as its assignee, but only the owner may do this."""

    def __init__(self, action: str) -> None:
        super().__init__(f"Only the task's owner may {action}; its assignee may change status only")


class VersionMismatch(PreconditionFailed):
    def __init__(self, current_version: int) -> None:
        super().__init__(
            "The task has changed since the version named in If-Match",
            extra={"current_version": current_version},
        )


class DependencyCycle(Conflict):
    def __init__(self, cycle: Sequence[int]) -> None:
        path = " -> ".join(str(task_id) for task_id in cycle)
        super().__init__(
            f"The dependency would close a cycle: {path}", extra={"cycle": list(cycle)}
        )


class TaskBlocked(Conflict):
    def __init__(self, task_id: int, blocking_ids: Sequence[int]) -> None:
        ids = ", ".join(str(blocker) for blocker in blocking_ids)
        super().__init__(
            f"Task {task_id} depends on tasks that are not done: {ids}",
            extra={"blocking_ids": list(blocking_ids)},
        )


class SelfDependency(UnprocessableEntity):
    def __init__(self) -> None:
        super().__init__(
            "A task cannot depend on itself",
            extra={
                "errors": [
                    {
                        "loc": ["body", "depends_on_id"],
                        "msg": "self dependency",
                        "type": "value_error",
                    }
                ]
            },
        )


class DependencyNotFound(NotFound):
    def __init__(self, task_id: int, depends_on_id: int) -> None:
        super().__init__(f"Task {task_id} does not depend on task {depends_on_id}")


class AssigneeNotActive(UnprocessableEntity):
    def __init__(self, user_id: int) -> None:
        super().__init__(
            f"User {user_id} is not an active user",
            extra={
                "errors": [
                    {
                        "loc": ["body", "assignee_id"],
                        "msg": "not an active user",
                        "type": "value_error",
                    }
                ]
            },
        )


class IdempotencyKeyReused(UnprocessableEntity):
    def __init__(self) -> None:
        super().__init__(
            "This Idempotency-Key was already used with a different request body",
        )


class IdempotencyKeyUnsettled(ServiceUnavailable):
    """The key's record kept expiring under the request: answered 503, safe to retry."""

    def __init__(self) -> None:
        super().__init__("The request with this Idempotency-Key could not be settled; retry")


class AssigneeNotMember(UnprocessableEntity):
    """A project's task may only be assigned to a member of the project."""

    def __init__(self, user_id: int, project_id: int) -> None:
        super().__init__(
            f"User {user_id} is not a member of project {project_id}",
            extra={
                "errors": [
                    {
                        "loc": ["body", "assignee_id"],
                        "msg": "not a member of the task's project",
                        "type": "value_error",
                    }
                ]
            },
        )


class DependencyOutsideProject(UnprocessableEntity):
    """Dependencies link tasks of one project, or personal tasks: never across that line."""

    def __init__(self, depends_on_id: int, field: str) -> None:
        super().__init__(
            f"Task {depends_on_id} is not in the same project: dependencies link tasks of one "
            "project, or personal tasks",
            extra={
                "errors": [
                    {
                        "loc": ["body", field],
                        "msg": "task in another project",
                        "type": "value_error",
                    }
                ]
            },
        )
