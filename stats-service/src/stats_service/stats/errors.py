"""Errors of the statistics domain."""

from __future__ import annotations

from taskflow_kit.errors import NotFound, ServiceUnavailable


class StatsUnavailable(ServiceUnavailable):
    """task-service cannot answer and no earlier value is kept: 503, never made-up zeros."""

    title = "Statistics Unavailable"


class ProjectNotFound(NotFound):
    """task-service says the caller is not a member of the project (or it does not exist)."""
