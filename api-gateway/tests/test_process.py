"""The gateway as it is deployed: `uvicorn api_gateway.main:create_app --factory` (uvloop,
httptools), configured only by environment variables, in front of a stand-in backend."""

from __future__ import annotations

import asyncio
import os
import sys
import time

import httpx
from conftest import JWT_SECRET, SESSION_PREFIX, BackendStarter
from gateway_doubles import free_port


async def test_a_real_gateway_process_configured_by_environment(
    start_backend: BackendStarter,
) -> None:
    backend, server = await start_backend("tasks")
    port = free_port()
    env = {
        **os.environ,
        "JWT_SECRET": JWT_SECRET,
        "REDIS_PREFIX": f"{SESSION_PREFIX}process:",
        "LOG_LEVEL": "WARNING",
        "GATEWAY_TASK_SERVICE_URLS": f"{server.url},http://127.0.0.1:{free_port()}",
        "GATEWAY_USER_SERVICE_URLS": server.url,
        "GATEWAY_STATS_SERVICE_URLS": server.url,
        "GATEWAY_MAX_BODY_BYTES": "2000",
        "GATEWAY_RATE_LIMIT_PER_IP": "1000",
    }
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "uvicorn",
        "api_gateway.main:create_app",
        "--factory",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--no-access-log",
        env=env,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=5) as client:
            deadline = time.monotonic() + 30
            while True:
                try:
                    if (await client.get("/health")).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                assert time.monotonic() < deadline, "the gateway did not start"
                await asyncio.sleep(0.1)
            # Keep-alive reuse, a dead second replica, bodies both ways, and the limit.
            for index in range(30):
                response = await client.post(f"/api/v1/tasks/?n={index}", content=b"x" * index)
                assert response.status_code == 200
                assert response.json()["body_length"] == index
                assert response.headers["ratelimit-limit"] == "1000"
            big = await client.get("/api/v1/tasks/stream?bytes=500000")
            assert len(big.content) == 500_000
            assert (await client.post("/api/v1/tasks/", content=b"y" * 2001)).status_code == 413
            head = await client.head("/api/v1/tasks/1")
            assert head.status_code == 200
            assert (await client.get("/api/v1/tasks/2")).status_code == 200  # after HEAD
    finally:
        process.terminate()
        await process.wait()
    assert backend.hits >= 32
