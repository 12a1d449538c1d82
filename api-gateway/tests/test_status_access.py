"""Who sees what of `/api/status` and `/metrics` (issue 9 item 11)."""

from __future__ import annotations

import asyncio
import time

import pytest
from conftest import JWT_SECRET, BackendStarter, GatewayFactory, access_token
from gateway_doubles import EMPTY_OPENAPI

MONITORING = "monitoring-token-0123456789"


async def test_the_public_sees_a_summary_operators_the_detail(
    make_gateway: GatewayFactory, start_backend: BackendStarter
) -> None:
    _backend, server = await start_backend(openapi=EMPTY_OPENAPI)
    urls = [server.url]
    async with make_gateway(
        users=urls, tasks=urls, stats=urls, trust_loopback=False, metrics_token=MONITORING
    ) as gw:
        public = await gw.client.get("/api/status")
        assert public.status_code == 200
        assert public.json() == {
            "status": "ok",
            "upstreams": {"user-service": "up", "task-service": "up", "stats-service": "up"},
        }
        user = {"Authorization": f"Bearer {access_token(5, is_superuser=False)}"}
        assert (await gw.client.get("/api/status", headers=user)).json() == public.json()

        forged = {"Authorization": "Bearer not-a-token"}
        refused = await gw.client.get("/api/status", headers=forged)
        assert refused.status_code == 401
        assert refused.headers["content-type"] == "application/problem+json"

        for headers in (
            {"Authorization": f"Bearer {access_token(1, is_superuser=True)}"},
            {"Authorization": f"Bearer {MONITORING}"},
        ):
            detail = (await gw.client.get("/api/status", headers=headers)).json()
            replicas = detail["upstreams"]["task-service"]["replicas"]
            assert [replica["url"] for replica in replicas] == [server.url]
            assert detail["upstreams"]["task-service"]["health"] == "up"
            assert detail["redis"]["status"] == "up"
            assert detail["rate_limiter"]["mode"] == "redis"


async def test_a_down_upstream_shows_in_the_summary(make_gateway: GatewayFactory) -> None:
    async with make_gateway(trust_loopback=False, health_interval_seconds=0.1) as gw:
        response = await gw.client.get("/api/v1/tasks")  # nothing listens: the replica is out
        assert response.status_code == 503
        deadline = time.monotonic() + 10
        while (summary := (await gw.client.get("/api/status")).json())["upstreams"][
            "task-service"
        ] != "down":
            assert time.monotonic() < deadline, summary
            await asyncio.sleep(0.05)
        assert summary["status"] == "degraded"
        assert "127.0.0.1" not in str(summary)


async def test_metrics_only_with_the_monitoring_token(make_gateway: GatewayFactory) -> None:
    async with make_gateway(trust_loopback=False) as gw:  # no token configured: not served
        assert (await gw.client.get("/metrics")).status_code == 404
        admin = {"Authorization": f"Bearer {access_token(1, is_superuser=True)}"}
        assert (await gw.client.get("/metrics", headers=admin)).status_code == 404
    async with make_gateway(trust_loopback=False, metrics_token=MONITORING) as gw:
        assert (await gw.client.get("/metrics")).status_code == 404
        wrong = {"Authorization": "Bearer wrong"}
        assert (await gw.client.get("/metrics", headers=wrong)).status_code == 404
        good = await gw.client.get("/metrics", headers={"Authorization": f"Bearer {MONITORING}"})
        assert good.status_code == 200
        assert "taskflow_http_requests_total" in good.text


def test_an_empty_monitoring_token_configures_none() -> None:
    from conftest import gateway_settings

    assert gateway_settings(metrics_token="").monitoring_token() is None
    # Production's default (off) is checked with the other environments' below.


def test_loopback_is_not_trusted_by_default_in_any_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Issue 21 point 8: only `make run` opts in (devstack sets GATEWAY_TRUST_LOOPBACK)."""
    from api_gateway.config import Settings

    monkeypatch.delenv("GATEWAY_TRUST_LOOPBACK", raising=False)
    for environment in ("development", "test", "production"):
        settings = Settings(environment=environment, jwt_secret=JWT_SECRET)
        assert settings.loopback_is_trusted() is False, environment
    monkeypatch.setenv("GATEWAY_TRUST_LOOPBACK", "true")
    assert Settings(environment="development", jwt_secret=JWT_SECRET).loopback_is_trusted()


async def test_a_loopback_client_sees_only_the_summary_by_default(
    make_gateway: GatewayFactory, start_backend: BackendStarter
) -> None:
    from api_gateway.config import Settings

    _backend, server = await start_backend(openapi=EMPTY_OPENAPI)
    urls = [server.url]
    default = Settings.model_fields["trust_loopback"].default
    async with make_gateway(users=urls, tasks=urls, stats=urls, trust_loopback=default) as gw:
        public = (await gw.client.get("/api/status")).json()  # the client is 127.0.0.1
        assert set(public) == {"status", "upstreams"}
        assert (await gw.client.get("/metrics")).status_code == 404
