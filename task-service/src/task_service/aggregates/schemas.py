"""The aggregates shape stats-service reads (see docs: internal aggregates contract)."""

from __future__ import annotations

from datetime import date, datetime
from typing import Literal

from pydantic import BaseModel

AggregateScope = Literal["user", "system"]


class StatusCounts(BaseModel):
    todo: int
    in_progress: int
    done: int


class PriorityCounts(BaseModel):
    low: int
    medium: int
    high: int
    urgent: int


class ActivityDay(BaseModel):
    date: date
    created: int
    completed: int


class TaskAggregates(BaseModel):
    total: int
    by_status: StatusCounts
    by_priority: PriorityCounts
    overdue: int
    due_next_7_days: int
    completed_last_7_days: int
    activity: list[ActivityDay]
    owners: int
    generated_at: datetime


class TaskStatsSummary(BaseModel):
    """`GET /api/v1/tasks/stats`: the tasktracker API's summary, kept field for field.

    That API knows three priorities, so an urgent task counts in `high_priority`: the three
    priority counts add up to `total`, as its clients expect."""

    total: int
    todo: int
    in_progress: int
    done: int
    completed: int
    high_priority: int
    medium_priority: int
    low_priority: int
