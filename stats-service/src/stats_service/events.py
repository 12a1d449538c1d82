"""Events stats-service consumes: task-service's `task.*` (consumer group `stats-service`).

A task event makes the cached figures of everyone it touches stale — the owner, the assignee
and a removed assignee — and the system overview. Stateless service: handled event ids are
remembered in Redis (`RedisDedupe`); invalidating twice is harmless anyway.
"""

from __future__ import annotations

from taskflow_kit.events import Event

from stats_service.stats.cache import StatsCache

CONSUMER_GROUP = "stats-service"


class TaskEventHandler:
    def __init__(self, cache: StatsCache) -> None:
        self.cache = cache

    async def __call__(self, event: Event) -> None:
        if not event.type.startswith("task."):
            return
        users = {
            int(value)
            for name in ("owner_id", "assignee_id", "previous_assignee_id")
            if (value := event.data.get(name)) is not None
        }
        await self.cache.invalidate(users)
