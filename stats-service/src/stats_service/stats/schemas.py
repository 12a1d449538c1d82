"""Statistics as served, and task-service's aggregate answer they are derived from."""

from __future__ import annotations

import datetime as dt

from pydantic import AwareDatetime, BaseModel, NonNegativeInt


class StatusCounts(BaseModel):
    todo: NonNegativeInt = 0
    in_progress: NonNegativeInt = 0
    done: NonNegativeInt = 0


class PriorityCounts(BaseModel):
    low: NonNegativeInt = 0
    medium: NonNegativeInt = 0
    high: NonNegativeInt = 0
    urgent: NonNegativeInt = 0


class ActivityDay(BaseModel):
    """Tasks created and completed on one UTC calendar day."""

    date: dt.date
    created: NonNegativeInt
    completed: NonNegativeInt


class TaskAggregates(BaseModel):
    """task-service's `GET /internal/tasks/aggregates` answer (see docs of that endpoint)."""

    total: NonNegativeInt
    by_status: StatusCounts
    by_priority: PriorityCounts
    overdue: NonNegativeInt
    due_next_7_days: NonNegativeInt
    completed_last_7_days: NonNegativeInt
    activity: list[ActivityDay]
    owners: NonNegativeInt
    generated_at: AwareDatetime


class StatsRead(BaseModel):
    """Statistics over the tasks the caller owns or is assigned (each task counted once)."""

    total_tasks: int
    completed_tasks: int
    completed_percentage: float
    by_status: StatusCounts
    by_priority: PriorityCounts
    overdue: int
    due_next_7_days: int
    completed_last_7_days: int
    generated_at: dt.datetime
    stale: bool = False


class OverviewRead(BaseModel):
    """System-wide statistics over every task (administrators only)."""

    total_tasks: int
    completed_tasks: int
    completed_percentage: float
    by_status: StatusCounts
    by_priority: PriorityCounts
    overdue: int
    owners: int
    generated_at: dt.datetime
    stale: bool = False
