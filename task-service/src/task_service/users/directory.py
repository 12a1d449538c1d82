"""Is this user an existing, active account? Asked when a task is assigned.

The directory of known users (`known_user`, fed by user-service's `user.*` events) answers
first: a user it knows is active, deactivated or deleted as of the latest event, with no call.
A user it does not know yet (registered a moment ago, or before events existed) is asked of
user-service; when user-service cannot answer, that is a 503 — never an assignment on a guess.
"""

from __future__ import annotations

import structlog
from taskflow_kit.resilience import ResilientClient, UpstreamUnavailable

from task_service.users.repository import KnownUserRepository

logger = structlog.get_logger("task_service.users.directory")


class UserDirectory:
    """`is_active_user` answers True/False, or raises `UpstreamUnavailable` (503 + Retry-After)."""

    def __init__(self, *, client: ResilientClient, known: KnownUserRepository) -> None:
        self.client = client
        self.known = known

    async def is_active_user(self, user_id: int, *, token: str) -> bool:
        known = await self.known.get(user_id)
        if known is not None:
            return known.is_active and not known.deleted
        response = await self.client.request(
            "GET", f"/api/v1/users/{user_id}", headers={"Authorization": f"Bearer {token}"}
        )
        if response.status_code == 404:
            return False
        if response.status_code != 200:
            # 401/403/other: user-service did not say yes or no about this user.
            logger.warning("user_service_unexpected_status", status=response.status_code)
            raise UpstreamUnavailable("user-service gave no usable answer", retry_after=5)
        try:
            body = response.json()
        except ValueError as exc:
            raise UpstreamUnavailable("user-service gave no usable answer") from exc
        return isinstance(body, dict) and body.get("is_active", True) is True
