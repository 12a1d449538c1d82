"""HTTP routes of the tasks API (`/api/v1/tasks`), thin over `TaskService`."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import APIRouter, Header, Path, Query, Response, status
from taskflow_kit.app import add_slashless_aliases
from taskflow_kit.auth import Principal, PrincipalDep
from taskflow_kit.db import RerunOnConflictRoute
from taskflow_kit.errors import Unauthorized, problem_responses
from taskflow_kit.resilience import UpstreamUnavailable

from task_service.projects.errors import ProjectNotFound
from task_service.tasks.dependencies import (
    DependencyReaderDep,
    DependencyWriterDep,
    IfMatchDep,
    TaskCreationDep,
    TaskFilterDep,
    TaskReaderDep,
    TaskWriterDep,
    etag,
)
from task_service.tasks.errors import (
    AssigneeNotActive,
    AssigneeNotMember,
    DependencyCycle,
    DependencyOutsideProject,
    IdempotencyKeyReused,
    OwnerOnly,
    SelfDependency,
    TaskBlocked,
    TaskNotFound,
    VersionMismatch,
)
from task_service.tasks.schemas import (
    DEPENDENCIES_DEFAULT_LIMIT,
    DEPENDENCIES_MAX_LIMIT,
    MAX_ID,
    DependencyCreate,
    DependencyTreeNode,
    TaskCreate,
    TaskDependencies,
    TaskList,
    TaskRead,
    TaskUpdate,
)
from task_service.tasks.service import IfMatch, TaskService

PREFIX = "/api/v1/tasks"
router = APIRouter(
    prefix=PREFIX,
    tags=["tasks"],
    responses=problem_responses(Unauthorized),
    route_class=RerunOnConflictRoute,
)

TaskIdPath = Annotated[int, Path(ge=1, le=MAX_ID)]


def _with_etag(response: Response, task: TaskRead) -> TaskRead:
    response.headers["ETag"] = etag(task.version)
    return task


@router.get("/", summary="List tasks", responses=problem_responses(ProjectNotFound))
async def list_tasks(
    principal: PrincipalDep, task_service: TaskReaderDep, task_filter: TaskFilterDep
) -> TaskList:
    """Tasks the caller can see (owned, assigned, and the tasks of their projects), or with
    `project_id` one project's tasks (members only: 404 otherwise), filtered, sorted (ties
    broken by id) and paged."""
    return await task_service.list_tasks(principal, task_filter)


@router.post(
    "/",
    status_code=status.HTTP_201_CREATED,
    summary="Create a task",
    responses=problem_responses(
        TaskNotFound,
        ProjectNotFound,
        TaskBlocked,
        AssigneeNotActive,
        AssigneeNotMember,
        DependencyOutsideProject,
        IdempotencyKeyReused,
        UpstreamUnavailable,
    ),
)
async def create_task(
    data: TaskCreate,
    principal: PrincipalDep,
    creation: TaskCreationDep,
    response: Response,
    idempotency_key: Annotated[
        str | None,
        Header(
            alias="Idempotency-Key",
            min_length=1,
            max_length=255,
            description="Same key and body within 24 h: the same response, no second task",
        ),
    ] = None,
) -> TaskRead:
    """Create a task owned by the caller. `assignee_id` must be an active user (asked of
    user-service: 503 with Retry-After when it cannot answer); `depends_on` lists visible tasks."""
    task = await creation.create(principal, data, idempotency_key)
    response.headers["Location"] = f"{PREFIX}/{task.id}"
    return _with_etag(response, task)


@router.get("/{task_id}", summary="Get a task", responses=problem_responses(TaskNotFound))
async def get_task(
    task_id: TaskIdPath, principal: PrincipalDep, task_service: TaskReaderDep, response: Response
) -> TaskRead:
    """One task with its `ETag` (404 unless the caller owns it or is its assignee)."""
    return _with_etag(response, await task_service.get_visible(principal, task_id))


_UPDATE_ERRORS = problem_responses(
    TaskNotFound,
    OwnerOnly,
    VersionMismatch,
    TaskBlocked,
    AssigneeNotActive,
    AssigneeNotMember,
    UpstreamUnavailable,
)


@router.patch("/{task_id}", summary="Update a task", responses=_UPDATE_ERRORS)
async def patch_task(
    task_id: TaskIdPath,
    data: TaskUpdate,
    principal: PrincipalDep,
    task_service: TaskWriterDep,
    if_match: IfMatchDep,
    response: Response,
) -> TaskRead:
    """Change the fields sent. The owner may change everything, the assignee only `status`
    (or `is_completed`). A stale `If-Match` → 412; done with open dependencies → 409."""
    return _with_etag(response, await task_service.update(principal, task_id, data, if_match))


@router.put("/{task_id}", summary="Update a task (partial, like PATCH)", responses=_UPDATE_ERRORS)
async def put_task(
    task_id: TaskIdPath,
    data: TaskUpdate,
    principal: PrincipalDep,
    task_service: TaskWriterDep,
    if_match: IfMatchDep,
    response: Response,
) -> TaskRead:
    """Same as PATCH: only the fields sent change (kept for existing clients)."""
    return _with_etag(response, await task_service.update(principal, task_id, data, if_match))


@router.delete(
    "/{task_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    summary="Delete a task",
    responses=problem_responses(TaskNotFound, OwnerOnly, VersionMismatch),
)
async def delete_task(
    task_id: TaskIdPath, principal: PrincipalDep, task_service: TaskWriterDep, if_match: IfMatchDep
) -> None:
    """Delete a task (owner only) and its dependency edges in both directions."""
    await task_service.delete(principal, task_id, if_match)


_STATUS_ERRORS = problem_responses(TaskNotFound, VersionMismatch, TaskBlocked)


StatusChange = Callable[[TaskService, Principal, int, IfMatch], Awaitable[TaskRead]]


def _status_endpoint(change: StatusChange) -> Callable[..., Awaitable[TaskRead]]:
    """One implementation behind the three status shortcuts (they differ only in the rule)."""

    async def endpoint(
        task_id: TaskIdPath,
        principal: PrincipalDep,
        task_service: TaskWriterDep,
        if_match: IfMatchDep,
        response: Response,
    ) -> TaskRead:
        return _with_etag(response, await change(task_service, principal, task_id, if_match))

    return endpoint


for _method, _path, _name, _summary, _change, _description in (
    (
        "PATCH",
        "/{task_id}/complete",
        "complete_task",
        "Mark done",
        TaskService.complete,
        "Move the task to `done` (409 listing `blocking_ids` while a dependency is not done).",
    ),
    (
        "PATCH",
        "/{task_id}/incomplete",
        "reopen_task",
        "Reopen",
        TaskService.reopen,
        "Move a done task back to `todo` (an unfinished task stays as it is).",
    ),
    (
        "POST",
        "/{task_id}/toggle",
        "toggle_task",
        "Toggle done",
        TaskService.toggle,
        "Done → todo; anything else → done.",
    ),
):
    router.add_api_route(
        _path,
        _status_endpoint(_change),
        methods=[_method],
        name=_name,
        summary=_summary,
        description=_description,
        response_model=TaskRead,
        responses=_STATUS_ERRORS,
    )


@router.post(
    "/{task_id}/dependencies",
    status_code=status.HTTP_201_CREATED,
    summary="Add a dependency",
    responses=problem_responses(
        TaskNotFound, OwnerOnly, SelfDependency, DependencyOutsideProject, DependencyCycle
    ),
)
async def add_dependency(
    task_id: TaskIdPath,
    data: DependencyCreate,
    principal: PrincipalDep,
    dependency_service: DependencyWriterDep,
    response: Response,
) -> TaskRead:
    """Make the task depend on `depends_on_id` (adding an existing edge changes nothing).
    409 names the cycle the edge would close, e.g. `cycle: [1, 2, 3, 1]`."""
    task = await dependency_service.add_dependency(principal, task_id, data.depends_on_id)
    return _with_etag(response, task)


@router.delete(
    "/{task_id}/dependencies/{depends_on_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    summary="Remove a dependency",
    responses=problem_responses(TaskNotFound, OwnerOnly),
)
async def remove_dependency(
    task_id: TaskIdPath,
    depends_on_id: TaskIdPath,
    principal: PrincipalDep,
    dependency_service: DependencyWriterDep,
) -> None:
    """Remove the edge task → depends_on_id (404 when there is none)."""
    await dependency_service.remove_dependency(principal, task_id, depends_on_id)


@router.get(
    "/{task_id}/dependencies",
    summary="Dependencies in both directions",
    responses=problem_responses(TaskNotFound),
)
async def list_dependencies(
    task_id: TaskIdPath,
    principal: PrincipalDep,
    dependency_service: DependencyReaderDep,
    limit: Annotated[
        int,
        Query(
            ge=1,
            le=DEPENDENCIES_MAX_LIMIT,
            description=f"Tasks listed per direction (1..{DEPENDENCIES_MAX_LIMIT})",
        ),
    ] = DEPENDENCIES_DEFAULT_LIMIT,
) -> TaskDependencies:
    """The tasks this one depends on and the tasks depending on it (those the caller can see),
    each the first `limit` by id (default 50, at most 200); `depends_on_total` and
    `dependents_total` count them all."""
    return await dependency_service.dependencies(principal, task_id, limit=limit)


@router.get(
    "/{task_id}/dependency-tree",
    summary="Nested dependency tree",
    responses=problem_responses(TaskNotFound),
)
async def dependency_tree(
    task_id: TaskIdPath,
    principal: PrincipalDep,
    dependency_service: DependencyReaderDep,
    depth: Annotated[int, Query(ge=1, le=10, description="Levels below the task")] = 3,
) -> DependencyTreeNode:
    """What the task depends on, recursively, `depth` levels deep. Tasks the caller cannot see
    appear with their id and status only, and are not expanded."""
    return await dependency_service.dependency_tree(principal, task_id, depth)


add_slashless_aliases(router)
