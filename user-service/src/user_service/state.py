"""user-service's state: everything its requests need, built once by the lifespan
(`user_service.main`) and read by the dependencies through `request.state`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends
from taskflow_kit.outbox import Outbox, OutboxRelay
from taskflow_kit.resources import ServiceResources, state_dependency

from user_service.auth.budgets import RouteBudgets
from user_service.auth.issuing import TokenIssuer
from user_service.auth.throttle import LoginThrottle
from user_service.config import Settings
from user_service.passwords import PasswordHasher


@dataclass(frozen=True, slots=True, kw_only=True)
class State(ServiceResources):
    settings: Settings
    outbox: Outbox
    relay: OutboxRelay
    password_hasher: PasswordHasher
    login_throttle: LoginThrottle
    route_budgets: RouteBudgets
    token_issuer: TokenIssuer


get_state = state_dependency(State)
StateDep = Annotated[State, Depends(get_state)]
