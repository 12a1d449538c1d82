"""The call to task-service's aggregate endpoint, on the caller's behalf."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx
import structlog
from httpx_aiohttp import AiohttpTransport
from pydantic import ValidationError
from taskflow_kit.errors import Forbidden, Unauthorized
from taskflow_kit.resilience import ResilientClient, UpstreamUnavailable

from stats_service.stats.errors import ProjectNotFound
from stats_service.stats.schemas import TaskAggregates

AGGREGATES_PATH = "/internal/tasks/aggregates"
logger = structlog.get_logger("stats_service.upstream")


def pooled_transport() -> httpx.AsyncBaseTransport:
    """httpx's interface on aiohttp's connection pool and C HTTP parser.

    Every `/stats/` read revalidates its cached figures with task-service, so this call is on
    the hot path: with httpx's own transport (httpcore over anyio streams) it was about half
    of stats-service's CPU per read (docs/performance.md, issue 16). The ResilientClient's
    timeouts, retries and circuit breaker work unchanged: the transport maps aiohttp's
    errors onto httpx's (a refused connection is `httpx.ConnectError`, a read timeout
    `httpx.ReadTimeout`)."""
    return AiohttpTransport(limits=httpx.Limits(max_connections=100, max_keepalive_connections=20))


@dataclass(frozen=True, slots=True)
class Fetched:
    """task-service's answer: the aggregates (None: unchanged since the tag sent) and their
    ETag (None when it sends none, as for the system scope)."""

    aggregates: TaskAggregates | None
    tag: str | None


class TaskAggregatesClient:
    """Reads counts computed by task-service (GROUP BY in its database), never task lists."""

    def __init__(self, client: ResilientClient) -> None:
        self._client = client

    async def fetch(
        self, token: str, *, system: bool, activity_days: int, project_id: int | None = None
    ) -> TaskAggregates:
        """The caller's (or one of their projects', or for an administrator every) task
        aggregates.

        Raises `UpstreamUnavailable` when task-service is down, slow, failing or answers
        something unusable; passes its 401/403, and 404 for a project, on unchanged in meaning.
        """
        fetched = await self.fetch_if_changed(
            token, system=system, activity_days=activity_days, project_id=project_id
        )
        assert fetched.aggregates is not None  # no tag sent: never "unchanged"
        return fetched.aggregates

    async def fetch_if_changed(
        self,
        token: str,
        *,
        system: bool,
        activity_days: int,
        tag: str | None = None,
        project_id: int | None = None,
    ) -> Fetched:
        """Like `fetch`, conditional on `tag` (task-service's ETag of aggregates held): None
        aggregates when nothing the caller sees has changed since."""
        params: dict[str, Any] = {"activity_days": activity_days}
        if system:
            params["scope"] = "system"
        if project_id is not None:
            params["project_id"] = project_id
        headers = {"Authorization": f"Bearer {token}"}
        if tag is not None:
            headers["If-None-Match"] = tag
        response = await self._client.request(
            "GET", AGGREGATES_PATH, params=params, headers=headers
        )
        if response.status_code == 304 and tag is not None:
            return Fetched(None, response.headers.get("ETag", tag))
        if response.status_code == 401:
            raise Unauthorized(_problem_detail(response) or "Not authenticated")
        if response.status_code == 403:
            raise Forbidden(_problem_detail(response) or "Forbidden")
        if response.status_code == 404 and project_id is not None:
            raise ProjectNotFound(_problem_detail(response) or f"Project {project_id} not found")
        if response.status_code != 200:
            logger.warning("aggregates_unexpected_status", status=response.status_code)
            raise UpstreamUnavailable(f"task-service answered {response.status_code}")
        try:
            aggregates = TaskAggregates.model_validate_json(response.content)
        except ValidationError as exc:
            logger.warning("aggregates_invalid_body", errors=exc.error_count())
            raise UpstreamUnavailable("task-service sent an unreadable aggregate") from exc
        return Fetched(aggregates, response.headers.get("ETag"))

    async def check(self) -> None:
        """Readiness probe: task-service answers its liveness endpoint."""
        response = await self._client.request("GET", "/health")
        response.raise_for_status()


def _problem_detail(response: httpx.Response) -> str | None:
    try:
        detail = response.json().get("detail")
    except (ValueError, AttributeError):
        return None
    return detail if isinstance(detail, str) else None
