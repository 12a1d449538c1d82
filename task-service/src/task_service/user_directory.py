"""Asks user-service whether a user exists and is active, remembering positive answers briefly."""

from __future__ import annotations

import structlog
from redis.asyncio import Redis
from redis.exceptions import RedisError
from taskflow_kit.resilience import ResilientClient, UpstreamUnavailable

logger = structlog.get_logger("task_service.user_directory")


class UserDirectory:
    """`is_active_user` answers True/False, or raises `UpstreamUnavailable` (503 + Retry-After)
    when user-service cannot answer: an assignee is never accepted on a guess."""

    def __init__(
        self, *, client: ResilientClient, redis: Redis, key_prefix: str, cache_ttl_seconds: int
    ) -> None:
        self.client = client
        self._redis = redis
        self._key_prefix = key_prefix
        self._cache_ttl_seconds = cache_ttl_seconds

    def _cache_key(self, user_id: int) -> str:
        return f"{self._key_prefix}task-service:active-user:{user_id}"

    async def is_active_user(self, user_id: int, *, token: str) -> bool:
        if await self._cached(user_id):
            return True
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
        active = isinstance(body, dict) and body.get("is_active", True) is True
        if active:
            await self._remember(user_id)
        return active

    async def _cached(self, user_id: int) -> bool:
        if self._cache_ttl_seconds <= 0:
            return False
        try:
            return await self._redis.get(self._cache_key(user_id)) is not None
        except RedisError:
            return False  # a cache outage only costs a call to user-service

    async def _remember(self, user_id: int) -> None:
        if self._cache_ttl_seconds <= 0:
            return
        try:
            await self._redis.set(self._cache_key(user_id), "1", ex=self._cache_ttl_seconds)
        except RedisError:
            logger.warning("user_cache_write_failed", user_id=user_id)

    async def forget(self, user_id: int) -> None:
        """Drop a cached positive answer (e.g. when the user was deactivated or deleted)."""
        try:
            await self._redis.delete(self._cache_key(user_id))
        except RedisError:
            logger.warning("user_cache_delete_failed", user_id=user_id)
