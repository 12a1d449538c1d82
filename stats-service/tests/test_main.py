"""Liveness, readiness and metrics of stats-service."""

from __future__ import annotations

from collections.abc import Callable

import httpx
import respx

Auth = Callable[..., dict[str, str]]


async def test_health_answers(client: httpx.AsyncClient) -> None:
    response = await client.get("/health")

    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


async def test_ready_when_redis_and_task_service_answer(
    client: httpx.AsyncClient, task_service: respx.MockRouter
) -> None:
    task_service.get("/health").respond(json={"status": "ok"})

    response = await client.get("/ready")

    assert response.status_code == 200
    checks = response.json()["checks"]
    assert checks["redis"]["status"] == checks["task_service"]["status"] == "up"


async def test_not_ready_when_task_service_is_down(
    client: httpx.AsyncClient, task_service: respx.MockRouter
) -> None:
    task_service.get("/health").mock(side_effect=httpx.ConnectError("refused"))

    response = await client.get("/ready")

    assert response.status_code == 503
    assert response.json()["checks"]["task_service"]["status"] == "down"


def answers_count(metrics: str, view: str, source: str) -> float:
    for line in metrics.splitlines():
        if line.startswith(f'taskflow_stats_answers_total{{source="{source}",view="{view}"}}'):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


async def test_metrics_count_where_answers_came_from(
    client: httpx.AsyncClient, task_service: respx.MockRouter, auth: Auth
) -> None:
    task_service.get("/internal/tasks/aggregates").mock(side_effect=httpx.ConnectError("down"))
    before = answers_count((await client.get("/metrics")).text, "summary", "unavailable")

    assert (await client.get("/api/v1/stats/", headers=auth(1))).status_code == 503
    response = await client.get("/metrics")

    assert response.status_code == 200
    assert answers_count(response.text, "summary", "unavailable") == before + 1


async def test_openapi_lists_the_public_routes(client: httpx.AsyncClient) -> None:
    paths = (await client.get("/openapi.json")).json()["paths"]

    assert {"/api/v1/stats/", "/api/v1/stats/activity", "/api/v1/stats/overview"} <= set(paths)
    assert "503" in paths["/api/v1/stats/"]["get"]["responses"]
    assert "403" in paths["/api/v1/stats/overview"]["get"]["responses"]


def test_service_code_reads_its_typed_state_never_app_state() -> None:
    import stats_service
    from taskflow_kit.testing import modules_reading_app_state

    assert modules_reading_app_state(stats_service) == []
