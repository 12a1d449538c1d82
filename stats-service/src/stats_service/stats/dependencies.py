"""Request dependencies of the statistics routes."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from stats_service.stats.service import StatsService


def get_stats_service(request: Request) -> StatsService:
    service: StatsService = request.app.state.stats_service
    return service


StatsServiceDep = Annotated[StatsService, Depends(get_stats_service)]
