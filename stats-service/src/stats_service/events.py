"""Events stats-service consumes: task-service's `task.*` and `project.*` (consumer group
`stats-service`).

A task event makes the cached figures of everyone it touches stale — the owner, the assignee,
a removed assignee and, for a project's task, every member (the event's `audience`) — and the
system overview. A `project.*` event does the same for its audience (a member who joined or
left sees other figures; a removed member's cached project figures must not be served).
Stateless service: handled event ids are remembered in Redis (`RedisDedupe`); invalidating
twice is harmless anyway.
"""

from __future__ import annotations

from taskflow_kit.events import Event

from stats_service.stats.cache import StatsCache

CONSUMER_GROUP = "stats-service"


class TaskEventHandler:
    def __init__(self, cache: StatsCache) -> None:
        self.cache = cache

    async def __call__(self, event: Event) -> None:
        if not event.type.startswith(("task.", "project.")):
            return
        users = {
            int(value)
            for name in ("owner_id", "assignee_id", "previous_assignee_id")
            if (value := event.data.get(name)) is not None
        }
        users.update(int(user_id) for user_id in event.data.get("audience") or ())
        await self.cache.invalidate(users)
