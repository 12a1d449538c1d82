"""Statistics of one project: asked of task-service with `project_id`, cached per member, and
404 when task-service says the caller is not a member."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import respx

AGGREGATES = "/internal/tasks/aggregates"

Payload = Callable[..., dict[str, Any]]
Auth = Callable[..., dict[str, str]]


async def test_project_stats_come_from_the_projects_aggregates(
    client: httpx.AsyncClient, task_service: respx.MockRouter, payload: Payload, auth: Auth
) -> None:
    def answer(request: httpx.Request) -> httpx.Response:
        if request.url.params.get("project_id") == "5":
            return httpx.Response(200, json=payload(todo=1, done=3))
        return httpx.Response(200, json=payload(todo=9))

    route = task_service.get(AGGREGATES).mock(side_effect=answer)
    project = await client.get("/api/v1/stats/", params={"project_id": 5}, headers=auth(7))
    assert project.status_code == 200
    assert (project.json()["total_tasks"], project.json()["completed_tasks"]) == (4, 3)
    # The person's own figures are another copy, not the project's.
    mine = await client.get("/api/v1/stats/", headers=auth(7))
    assert mine.json()["total_tasks"] == 9
    activity = await client.get(
        "/api/v1/stats/activity", params={"project_id": 5, "days": 7}, headers=auth(7)
    )
    assert activity.status_code == 200
    assert len(activity.json()) == 7
    assert route.calls.last.request.url.params["project_id"] == "5"
    # Another member's request is their own copy: task-service checks each member.
    before = route.call_count
    await client.get("/api/v1/stats/", params={"project_id": 5}, headers=auth(8))
    assert route.call_count == before + 1


async def test_a_non_member_gets_404_not_stale_figures(
    client: httpx.AsyncClient, task_service: respx.MockRouter, auth: Auth
) -> None:
    task_service.get(AGGREGATES).respond(
        404,
        json={
            "type": "about:blank",
            "title": "Not Found",
            "status": 404,
            "detail": "Project 5 not found",
        },
    )
    response = await client.get("/api/v1/stats/", params={"project_id": 5}, headers=auth(7))
    assert response.status_code == 404
    assert response.headers["content-type"].startswith("application/problem+json")
    assert response.json()["detail"] == "Project 5 not found"
    bad = await client.get("/api/v1/stats/", params={"project_id": 0}, headers=auth(7))
    assert bad.status_code == 422
