"""task-service settings: its database, where user-service lives, and how long to trust it."""

from __future__ import annotations

from pydantic import AliasChoices, Field
from taskflow_kit.settings import ServiceSettings

SERVICE_NAME = "task-service"


class Settings(ServiceSettings):
    """Environment configuration of task-service (shared names come from the kit)."""

    database_url: str = Field(
        default="postgresql://postgres@127.0.0.1:5432/taskflow_tasks",
        validation_alias=AliasChoices("TASK_SERVICE_DATABASE_URL", "DATABASE_URL"),
    )
    user_service_url: str = Field(
        default="http://127.0.0.1:8001",
        validation_alias=AliasChoices("USER_SERVICE_URL", "user_service_url"),
    )
    migrate_on_start: bool = Field(
        default=True, validation_alias=AliasChoices("MIGRATE_ON_START", "migrate_on_start")
    )
    user_service_connect_timeout: float = 1.0
    user_service_read_timeout: float = 3.0
