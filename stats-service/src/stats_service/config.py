"""stats-service settings: where task-service is and how long statistics are cached."""

from __future__ import annotations

from pydantic import Field
from taskflow_kit.settings import ServiceSettings


class Settings(ServiceSettings):
    """Environment: TASK_SERVICE_URL, TASK_SERVICE_TIMEOUT_SECONDS, STATS_CACHE_TTL_SECONDS,
    STATS_LAST_GOOD_TTL_SECONDS (plus the shared JWT/Redis/logging names)."""

    task_service_url: str = "http://127.0.0.1:8002"
    # Past this the statistics are answered from the last known value (or 503), not awaited.
    task_service_timeout_seconds: float = Field(default=3.0, gt=0)
    # Task events invalidate entries at once; this only bounds how long an unchanged answer
    # is reused before task-service is asked again.
    stats_cache_ttl_seconds: int = Field(default=30, ge=1)
    # The "last known good" copy, served (marked stale) only while task-service fails.
    stats_last_good_ttl_seconds: int = Field(default=24 * 3600, ge=1)
