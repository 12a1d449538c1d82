"""Request dependencies of the statistics routes."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends

from stats_service.state import StateDep
from stats_service.stats.service import StatsService


async def get_stats_service(state: StateDep) -> StatsService:
    return state.stats_service


StatsServiceDep = Annotated[StatsService, Depends(get_stats_service)]
