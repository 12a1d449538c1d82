"""Every gateway response says `nosniff`, proxied or its own; HSTS only when configured."""

from __future__ import annotations

from conftest import BackendStarter, GatewayFactory


async def test_every_response_carries_nosniff_and_no_hsts_by_default(
    make_gateway: GatewayFactory, start_backend: BackendStarter
) -> None:
    _, server = await start_backend()
    async with make_gateway(tasks=[server.url]) as gw:
        responses = [
            await gw.client.get("/api/v1/tasks/"),  # proxied
            await gw.client.get("/health"),  # the gateway's own
            await gw.client.get("/"),  # the web app (sets nosniff itself: not doubled)
            await gw.client.get("/api/v1/nowhere"),  # an error
            await gw.client.options(
                "/api/v1/tasks/",
                headers={
                    "Origin": "http://localhost:3000",
                    "Access-Control-Request-Method": "GET",
                },
            ),
        ]

    for response in responses:
        assert response.headers.get_list("x-content-type-options") == ["nosniff"], response.url
        assert "strict-transport-security" not in response.headers


async def test_hsts_when_configured(
    make_gateway: GatewayFactory, start_backend: BackendStarter
) -> None:
    _, server = await start_backend()
    async with make_gateway(tasks=[server.url], hsts_seconds=31536000) as gw:
        proxied = await gw.client.get("/api/v1/tasks/")
        own = await gw.client.get("/health")

    for response in (proxied, own):
        assert response.headers["strict-transport-security"] == (
            "max-age=31536000; includeSubDomains"
        )
