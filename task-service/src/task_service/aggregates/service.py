"""Task aggregates for stats-service: the caller's visible tasks, or every task for admins."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from taskflow_kit.auth import Principal
from taskflow_kit.errors import Forbidden

from task_service.aggregates.repository import AggregateRepository
from task_service.aggregates.schemas import (
    ActivityDay,
    AggregateScope,
    PriorityCounts,
    StatusCounts,
    TaskAggregates,
    TaskStatsSummary,
)
from task_service.tasks.models import TaskPriority, TaskStatus


class SystemScopeForbidden(Forbidden):
    def __init__(self) -> None:
        super().__init__("System-wide aggregates are for administrators")


def version_tag(user_id: int, version: int) -> str:
    """The `ETag` of a user's aggregates at `version` of their tasks."""
    return f'W/"{user_id}.{version}"'


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
    ) -> Aggregated:
        """The aggregates, unless the caller already holds them: one of `known_tags` is the
        current tag of the caller's tasks. The version is read before the counts, so a change
        committed in between makes the tag older than the counts, never newer: the next
        conditional read computes them again."""
        if scope == "system":
            return Aggregated(await self.aggregates(principal, scope, activity_days), None)
        tag = version_tag(principal.id, await self.repository.version(principal.id))
        if tag in known_tags:
            return Aggregated(None, tag)
        return Aggregated(await self.aggregates(principal, scope, activity_days), tag)

    async def aggregates(
        self, principal: Principal, scope: AggregateScope, activity_days: int
    ) -> TaskAggregates:
        if scope == "system" and not principal.is_superuser:
            raise SystemScopeForbidden()
        user_id = None if scope == "system" else principal.id
        now = self.clock()
        today = now.astimezone(UTC).date()
        first_day = today - timedelta(days=activity_days - 1)
        counts = await self.repository.counts(user_id, now)
        created = await self.repository.created_per_day(user_id, first_day)
        completed = await self.repository.completed_per_day(user_id, first_day)
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
        counts = await self.repository.counts(principal.id, self.clock())
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
