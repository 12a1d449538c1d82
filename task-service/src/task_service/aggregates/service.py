"""Task aggregates for stats-service: the caller's visible tasks, or every task for admins."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from taskflow_kit.auth import Principal

from task_service.aggregates.errors import SystemScopeForbidden
from task_service.aggregates.repository import AggregateRepository, Scope
from task_service.aggregates.schemas import (
    ActivityDay,
    AggregateScope,
    PriorityCounts,
    StatusCounts,
    TaskAggregates,
    TaskStatsSummary,
)
from task_service.projects.errors import ProjectNotFound
from task_service.tasks.models import TaskPriority, TaskStatus


def version_tag(user_id: int, version: int, project_id: int | None = None) -> str:
    """The `ETag` of a user's aggregates (or of one of their projects', as they see it) at
    `version` of their tasks: every change to a project's task is a new version for each
    member."""
    if project_id is None:
        return f'W/"{user_id}.{version}"'
    return f'W/"{user_id}.{version}.p{project_id}"'


@dataclass(frozen=True, slots=True)
class Aggregated:
    """The aggregates (None when the caller's `If-None-Match` still holds) and their `ETag`
    (None for the system scope, which has no single version)."""

    aggregates: TaskAggregates | None
    tag: str | None


class AggregateService:
    def __init__(
        self,
        repository: AggregateRepository,
        *,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.repository = repository
        self.clock = clock

    async def aggregates_if_changed(
        self,
        principal: Principal,
        scope: AggregateScope,
        activity_days: int,
        *,
        known_tags: frozenset[str] = frozenset(),
        project_id: int | None = None,
    ) -> Aggregated:
        """The aggregates, unless the caller already holds them: one of `known_tags` is the
        current tag of the caller's tasks. The version is read before the counts, so a change
        committed in between makes the tag older than the counts, never newer: the next
        conditional read computes them again. A project's figures are for its members only
        (404 before any tag is compared)."""
        if scope == "system":
            return Aggregated(await self.aggregates(principal, scope, activity_days), None)
        if project_id is not None and not await self.repository.is_member(project_id, principal.id):
            raise ProjectNotFound(project_id)
        version = await self.repository.version(principal.id)
        tag = version_tag(principal.id, version, project_id)
        if tag in known_tags:
            return Aggregated(None, tag)
        aggregates = await self.aggregates(principal, scope, activity_days, project_id=project_id)
        return Aggregated(aggregates, tag)

    async def aggregates(
        self,
        principal: Principal,
        scope: AggregateScope,
        activity_days: int,
        *,
        project_id: int | None = None,
    ) -> TaskAggregates:
        """The counts of every task (`system`, administrators), of one project (a member's,
        404 for anyone else), or of the caller's visible tasks."""
        if scope == "system" and not principal.is_superuser:
            raise SystemScopeForbidden()
        if project_id is not None and not await self.repository.is_member(project_id, principal.id):
            raise ProjectNotFound(project_id)
        counted: Scope = "system" if scope == "system" else "user"
        if project_id is not None and counted == "user":
            counted = "project"
        where = {"user_id": principal.id, "project_id": project_id}
        now = self.clock()
        today = now.astimezone(UTC).date()
        first_day = today - timedelta(days=activity_days - 1)
        counts = await self.repository.counts(counted, now, **where)
        created = await self.repository.created_per_day(counted, first_day, **where)
        completed = await self.repository.completed_per_day(counted, first_day, **where)
        days = [first_day + timedelta(days=offset) for offset in range(activity_days)]
        return TaskAggregates(
            total=counts["total"],
            by_status=StatusCounts(**{name: counts[f"status_{name}"] for name in TaskStatus}),
            by_priority=PriorityCounts(
                **{name: counts[f"priority_{name}"] for name in TaskPriority}
            ),
            overdue=counts["overdue"],
            due_next_7_days=counts["due_next_7_days"],
            completed_last_7_days=counts["completed_last_7_days"],
            activity=[
                ActivityDay(date=day, created=created.get(day, 0), completed=completed.get(day, 0))
                for day in days
            ],
            owners=counts["owners"],
            generated_at=now,
        )

    async def summary(self, principal: Principal) -> TaskStatsSummary:
        """The caller's visible tasks in the tasktracker API's shape (see `TaskStatsSummary`)."""
        counts = await self.repository.counts("user", self.clock(), user_id=principal.id)
        done = counts[f"status_{TaskStatus.DONE}"]
        return TaskStatsSummary(
            total=counts["total"],
            todo=counts[f"status_{TaskStatus.TODO}"],
            in_progress=counts[f"status_{TaskStatus.IN_PROGRESS}"],
            done=done,
            completed=done,
            high_priority=counts[f"priority_{TaskPriority.HIGH}"]
            + counts[f"priority_{TaskPriority.URGENT}"],
            medium_priority=counts[f"priority_{TaskPriority.MEDIUM}"],
            low_priority=counts[f"priority_{TaskPriority.LOW}"],
        )
