"""HTTP routes of the projects API (`/api/v1/projects`), thin over `ProjectService`."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Response, status
from taskflow_kit.app import add_slashless_aliases
from taskflow_kit.auth import PrincipalDep
from taskflow_kit.db import RerunOnConflictRoute
from taskflow_kit.errors import Unauthorized, problem_responses
from taskflow_kit.resilience import UpstreamUnavailable

from task_service.projects.dependencies import ProjectReaderDep, ProjectWriterDep
from task_service.projects.errors import (
    AlreadyMember,
    MemberNotActive,
    MemberNotFound,
    OwnerCannotBeRemoved,
    ProjectNotFound,
    ProjectRoleRequired,
    ProjectVersionMismatch,
)
from task_service.projects.schemas import (
    MemberCreate,
    MemberList,
    MemberRead,
    ProjectCreate,
    ProjectList,
    ProjectRead,
    ProjectUpdate,
)
from task_service.tasks.dependencies import IfMatchDep, etag
from task_service.tasks.schemas import MAX_ID

PREFIX = "/api/v1/projects"
router = APIRouter(
    prefix=PREFIX,
    tags=["projects"],
    responses=problem_responses(Unauthorized),
    route_class=RerunOnConflictRoute,
)

ProjectIdPath = Annotated[int, Path(ge=1, le=MAX_ID)]
UserIdPath = Annotated[int, Path(ge=1, le=MAX_ID)]


def _with_etag(response: Response, project: ProjectRead) -> ProjectRead:
    response.headers["ETag"] = etag(project.version)
    return project


@router.post("/", status_code=status.HTTP_201_CREATED, summary="Create a project")
async def create_project(
    data: ProjectCreate,
    principal: PrincipalDep,
    project_service: ProjectWriterDep,
    response: Response,
) -> ProjectRead:
    """A new project; the caller is its `owner` and first member."""
    project = await project_service.create(principal, data)
    response.headers["Location"] = f"{PREFIX}/{project.id}"
    return _with_etag(response, project)


@router.get("/", summary="List my projects")
async def list_projects(principal: PrincipalDep, project_service: ProjectReaderDep) -> ProjectList:
    """The projects the caller is a member of (by name), each with the caller's `role` and
    the number of members."""
    return await project_service.list_projects(principal)


@router.get("/{project_id}", summary="Get a project", responses=problem_responses(ProjectNotFound))
async def get_project(
    project_id: ProjectIdPath,
    principal: PrincipalDep,
    project_service: ProjectReaderDep,
    response: Response,
) -> ProjectRead:
    """One project with its `ETag` (404 unless the caller is a member)."""
    return _with_etag(response, await project_service.get(principal, project_id))


@router.patch(
    "/{project_id}",
    summary="Rename a project",
    responses=problem_responses(ProjectNotFound, ProjectRoleRequired, ProjectVersionMismatch),
)
async def patch_project(
    project_id: ProjectIdPath,
    data: ProjectUpdate,
    principal: PrincipalDep,
    project_service: ProjectWriterDep,
    if_match: IfMatchDep,
    response: Response,
) -> ProjectRead:
    """Change `name` and/or `description` (owner or admin; other members 403). A stale
    `If-Match` → 412."""
    project = await project_service.update(principal, project_id, data, if_match)
    return _with_etag(response, project)


@router.delete(
    "/{project_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    summary="Delete a project",
    responses=problem_responses(ProjectNotFound, ProjectRoleRequired, ProjectVersionMismatch),
)
async def delete_project(
    project_id: ProjectIdPath,
    principal: PrincipalDep,
    project_service: ProjectWriterDep,
    if_match: IfMatchDep,
) -> None:
    """Delete the project with all its tasks and their dependencies (owner only; other members
    403). Members are told by a `project.deleted` event."""
    await project_service.delete(principal, project_id, if_match)


@router.get(
    "/{project_id}/members",
    summary="List a project's members",
    responses=problem_responses(ProjectNotFound),
)
async def list_members(
    project_id: ProjectIdPath, principal: PrincipalDep, project_service: ProjectReaderDep
) -> MemberList:
    """Every member with their role, earliest first (404 unless the caller is a member)."""
    return await project_service.members(principal, project_id)


@router.post(
    "/{project_id}/members",
    status_code=status.HTTP_201_CREATED,
    summary="Add a member",
    responses=problem_responses(
        ProjectNotFound, ProjectRoleRequired, MemberNotActive, AlreadyMember, UpstreamUnavailable
    ),
)
async def add_member(
    project_id: ProjectIdPath,
    data: MemberCreate,
    principal: PrincipalDep,
    project_service: ProjectWriterDep,
) -> MemberRead:
    """Add an active user as `member` or `admin` (owner or admin only). An inactive or unknown
    user → 422; already a member → 409."""
    return await project_service.add_member(principal, project_id, data)


@router.delete(
    "/{project_id}/members/{user_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    summary="Remove a member, or leave",
    responses=problem_responses(
        ProjectNotFound, ProjectRoleRequired, OwnerCannotBeRemoved, MemberNotFound
    ),
)
async def remove_member(
    project_id: ProjectIdPath,
    user_id: UserIdPath,
    principal: PrincipalDep,
    project_service: ProjectWriterDep,
) -> None:
    """Remove a member (owner or admin), or leave (any member, with their own id). The owner
    cannot be removed. The removed member loses the project's tasks at once and is unassigned
    from them."""
    await project_service.remove_member(principal, project_id, user_id)


add_slashless_aliases(router)
