"""Aggregate routes: the internal one stats-service reads (never routed by the gateway; the
caller's token applies), and the tasktracker API's `GET /api/v1/tasks/stats` (compatibility)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Header, Query, Response
from taskflow_kit.auth import PrincipalDep
from taskflow_kit.db import ConnectionDep
from taskflow_kit.errors import Unauthorized, problem_response, problem_responses

from task_service.aggregates.errors import SystemScopeForbidden
from task_service.aggregates.repository import AggregateRepository
from task_service.aggregates.schemas import AggregateScope, TaskAggregates, TaskStatsSummary
from task_service.aggregates.service import AggregateService
from task_service.projects.errors import ProjectNotFound
from task_service.tasks.schemas import MAX_ID

router = APIRouter(prefix="/internal/tasks", tags=["internal"])
# Included before the tasks router, so `stats` is this route and never read as a task id.
compat_router = APIRouter(prefix="/api/v1/tasks", tags=["tasks"])


async def get_aggregate_service(connection: ConnectionDep) -> AggregateService:
    return AggregateService(AggregateRepository(connection))


def _entity_tags(header: str | None) -> frozenset[str]:
    return frozenset(tag.strip() for tag in (header or "").split(",") if tag.strip())


@router.get(
    "/aggregates",
    summary="Task counts for stats-service",
    response_model=TaskAggregates,
    responses={
        304: {"description": "Unchanged since the `If-None-Match` version (user scope)"},
        **problem_responses(Unauthorized, SystemScopeForbidden, ProjectNotFound),
    },
)
async def task_aggregates(
    principal: PrincipalDep,
    aggregate_service: Annotated[AggregateService, Depends(get_aggregate_service)],
    response: Response,
    scope: Annotated[
        AggregateScope, Query(description="user: the caller's visible tasks; system: all (admin)")
    ] = "user",
    activity_days: Annotated[int, Query(ge=1, le=365)] = 30,
    project_id: Annotated[
        int | None,
        Query(ge=1, le=MAX_ID, description="One project's tasks (members only, else 404)"),
    ] = None,
    if_none_match: Annotated[
        str | None,
        Header(
            alias="If-None-Match",
            description="ETag of aggregates the caller holds: 304 while none of its tasks changed",
        ),
    ] = None,
) -> TaskAggregates | Response:
    """Counts by status and priority, overdue, due in 7 days, completed in 7 days, and daily
    created/completed counts for `activity_days` UTC days (zero-filled), all by GROUP BY.

    For the user scope the answer has an `ETag` naming the version of the caller's tasks (every
    change that touches them makes a new one, in its own transaction); with that tag in
    `If-None-Match` the answer is 304 without a body while it holds. Time still moves the
    figures (overdue, the last 7 days): a holder keeps an answer only as long as it would have
    cached it anyway."""
    found = await aggregate_service.aggregates_if_changed(
        principal,
        scope,
        activity_days,
        known_tags=_entity_tags(if_none_match),
        project_id=project_id,
    )
    if found.aggregates is None:
        assert found.tag is not None
        return Response(status_code=304, headers={"ETag": found.tag})
    if found.tag is not None:
        response.headers["ETag"] = found.tag
    return found.aggregates


@compat_router.get(
    "/stats",
    summary="Task counts of the caller (tasktracker compatibility)",
    responses=problem_responses(Unauthorized),
)
async def task_stats_summary(
    principal: PrincipalDep,
    aggregate_service: Annotated[AggregateService, Depends(get_aggregate_service)],
) -> TaskStatsSummary:
    """Counts over the tasks the caller owns or is assigned to, in the tasktracker API's shape:
    by status (`completed` is the `done` count) and by priority over all of them, an urgent
    task counted in `high_priority`. `GET /api/v1/stats/` has the fuller picture."""
    return await aggregate_service.summary(principal)


@compat_router.api_route(
    "/stats",
    methods=["POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"],
    include_in_schema=False,
)
async def task_stats_other_methods() -> Response:
    """405: without this, `PUT`/`PATCH`/`DELETE /tasks/{task_id}` would take `stats` for a task
    id and answer 422 (and the kit's `Allow` would list what this route catches)."""
    return problem_response(
        405, "Method Not Allowed", "Only GET is served here", headers={"Allow": "GET"}
    )
