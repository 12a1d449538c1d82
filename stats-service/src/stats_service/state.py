"""stats-service's state: everything its requests need, built once by the lifespan
(`stats_service.main`) and read by the dependencies through `request.state`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends
from taskflow_kit.consumer import StreamConsumer
from taskflow_kit.resources import ServiceResources, state_dependency

from stats_service.config import Settings
from stats_service.stats.service import StatsService


@dataclass(frozen=True, slots=True, kw_only=True)
class State(ServiceResources):
    settings: Settings
    stats_service: StatsService
    consumer: StreamConsumer


get_state = state_dependency(State)
StateDep = Annotated[State, Depends(get_state)]
