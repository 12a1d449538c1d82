"""`/api/v1/stats`: the caller's statistics, their daily activity, and the admin overview."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Response
from taskflow_kit.app import add_slashless_aliases
from taskflow_kit.auth import PrincipalDep, SuperuserClaimDep
from taskflow_kit.errors import Forbidden, Unauthorized, UnprocessableEntity, problem_responses

from stats_service.stats.dependencies import StatsServiceDep
from stats_service.stats.errors import ProjectNotFound, StatsUnavailable
from stats_service.stats.schemas import ActivityDay, OverviewRead, StatsRead
from stats_service.stats.service import Served

router = APIRouter(prefix="/api/v1/stats", tags=["stats"])

STALE_WARNING = '110 - "Response is Stale"'
MAX_ID = 2**63 - 1

ProjectIdQuery = Annotated[
    int | None,
    Query(
        ge=1,
        le=MAX_ID,
        description="One project's tasks instead of yours (members only, 404 otherwise)",
    ),
]


def _freshness_headers(response: Response, served: Served[Any]) -> None:
    # Answers are per user and short-lived: no shared cache may keep them.
    response.headers["Cache-Control"] = "private, no-cache"
    if served.stale:
        response.headers["Warning"] = STALE_WARNING
        response.headers["Age"] = str(served.age_seconds)


@router.get(
    "/",
    response_model=StatsRead,
    responses=problem_responses(Unauthorized, ProjectNotFound, StatsUnavailable),
)
async def read_stats(
    principal: PrincipalDep,
    stats_service: StatsServiceDep,
    response: Response,
    project_id: ProjectIdQuery = None,
) -> StatsRead:
    """Statistics over the tasks you can see (each task counted once), or, with
    `project_id`, over one project's tasks (members only; 404 otherwise).

    Counts come from task-service's database and are cached for a few seconds. If
    task-service fails, the last known figures are returned with `stale: true` and a
    `Warning: 110` header; with nothing known, 503 with `Retry-After`.
    """
    served = await stats_service.user_stats(principal, project_id=project_id)
    _freshness_headers(response, served)
    return served.value


@router.get(
    "/activity",
    response_model=list[ActivityDay],
    responses=problem_responses(
        Unauthorized, UnprocessableEntity, ProjectNotFound, StatsUnavailable
    ),
)
async def read_activity(
    principal: PrincipalDep,
    stats_service: StatsServiceDep,
    response: Response,
    days: Annotated[int, Query(ge=1, le=365, description="Number of UTC days, up to today")] = 30,
    project_id: ProjectIdQuery = None,
) -> list[ActivityDay]:
    """Tasks created and completed per UTC day over the last `days` days (today included),
    oldest first, one row per day even when nothing happened.

    If task-service fails, the last known series is returned with a `Warning: 110` header;
    with nothing known, 503 with `Retry-After`.
    """
    served = await stats_service.user_activity(principal, days=days, project_id=project_id)
    _freshness_headers(response, served)
    return served.value


@router.get(
    "/overview",
    response_model=OverviewRead,
    responses=problem_responses(Unauthorized, Forbidden, StatsUnavailable),
)
async def read_overview(
    principal: SuperuserClaimDep, stats_service: StatsServiceDep, response: Response
) -> OverviewRead:
    """System-wide statistics over every task, with the number of distinct owners.
    Administrators only (403 otherwise). Stale and 503 behave as for `/api/v1/stats/`."""
    served = await stats_service.system_overview(principal)
    _freshness_headers(response, served)
    return served.value


add_slashless_aliases(router)
