"""The merged OpenAPI document: public paths only, deduplicated components, last good kept."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from api_gateway.openapi import merge_documents
from conftest import BackendStarter, GatewayFactory

ERROR = {"type": "object", "properties": {"detail": {"type": "string"}}}


def service_doc(paths: dict[str, str], schemas: dict[str, Any]) -> dict[str, Any]:
    return {
        "openapi": "3.1.0",
        "info": {"title": "svc", "version": "1"},
        "paths": {
            path: {
                "get": {
                    "operationId": f"op_{path.strip('/').replace('/', '_')}",
                    "tags": ["things"],
                    "responses": {
                        "200": {
                            "description": "ok",
                            "content": {
                                "application/json": {
                                    "schema": {"$ref": f"#/components/schemas/{schema}"}
                                }
                            },
                        }
                    },
                }
            }
            for path, schema in paths.items()
        },
        "components": {
            "schemas": schemas,
            "securitySchemes": {
                "OAuth2PasswordBearer": {
                    "type": "oauth2",
                    "flows": {"password": {"scopes": {}, "tokenUrl": "/api/v1/auth/login"}},
                }
            },
        },
    }


USERS = service_doc(
    {"/api/v1/users/": "User", "/api/v1/auth/me": "User", "/health": "Error"},
    {"User": {"type": "object"}, "Error": ERROR, "Page": {"type": "object", "title": "users"}},
)
TASKS = service_doc(
    {"/api/v1/tasks/": "Page", "/internal/tasks/aggregates": "Error", "/metrics": "Error"},
    {"Error": ERROR, "Page": {"type": "object", "title": "tasks"}},
)


def test_merge_keeps_public_paths_and_deduplicates_components() -> None:
    gateway = {
        "openapi": "3.1.0",
        "info": {"title": "gw", "version": "1"},
        "paths": {"/api/status": {"get": {"operationId": "status"}}},
    }
    merged = merge_documents(gateway, {"user-service": USERS, "task-service": TASKS})
    assert set(merged["paths"]) == {
        "/api/status",
        "/api/v1/users/",
        "/api/v1/auth/me",
        "/api/v1/tasks/",
    }
    schemas = merged["components"]["schemas"]
    assert schemas["Error"] == ERROR  # identical: one copy
    # Same name, different shapes: the later service's copy is renamed and its refs follow.
    assert schemas["Page"]["title"] == "tasks"
    assert schemas["UserServicePage"]["title"] == "users"
    tasks_schema = merged["paths"]["/api/v1/tasks/"]["get"]["responses"]["200"]["content"][
        "application/json"
    ]["schema"]
    assert tasks_schema == {"$ref": "#/components/schemas/Page"}
    flows = merged["components"]["securitySchemes"]["OAuth2PasswordBearer"]["flows"]
    assert flows["password"]["tokenUrl"] == "/api/v1/auth/login"
    assert [tag["name"] for tag in merged["tags"]] == ["things"]


def test_every_forwarded_operation_documents_what_the_gateway_itself_may_answer() -> None:
    gateway = {
        "openapi": "3.1.0",
        "info": {"title": "gw", "version": "1"},
        "paths": {"/api/status": {"get": {"operationId": "status", "responses": {}}}},
    }
    problem = {"type": "object", "properties": {"title": {"type": "string"}}}
    tasks = {**TASKS, "components": {**TASKS["components"], "schemas": {"Problem": problem}}}
    merged = merge_documents(gateway, {"task-service": tasks})
    responses = merged["paths"]["/api/v1/tasks/"]["get"]["responses"]
    # An unsafe path is refused with 400 before any service sees it (schemathesis found it
    # undocumented); limits, and an unreachable or slow service, answer from the gateway too.
    assert {"200", "400", "413", "429", "502", "503", "504"} <= set(responses)
    assert responses["400"]["content"]["application/problem+json"]["schema"] == {
        "$ref": "#/components/schemas/Problem"
    }
    assert responses["200"]["description"] == "ok"  # the service's own entries are kept
    assert merged["paths"]["/api/status"]["get"]["responses"] == {}  # not a forwarded route


async def test_docs_are_served_merged_refreshed_and_kept_when_a_service_is_down(
    make_gateway: GatewayFactory, start_backend: BackendStarter
) -> None:
    _users, users_server = await start_backend("users", openapi=USERS)
    tasks, tasks_server = await start_backend("tasks", openapi=TASKS)
    async with make_gateway(
        users=[users_server.url], tasks=[tasks_server.url], openapi_refresh_seconds=0.2
    ) as gw:

        async def paths() -> set[str]:
            return set((await gw.client.get("/openapi.json")).json()["paths"])

        deadline = time.monotonic() + 5
        while "/api/v1/tasks/" not in await paths():
            assert time.monotonic() < deadline
            await asyncio.sleep(0.05)
        current = await paths()
        assert {
            "/api/v1/users/",
            "/api/v1/auth/me",
            "/api/v1/tasks/",
            "/api/status",
            "/health",
        } <= current
        assert not any(path.startswith("/internal") for path in current)

        tasks.openapi = service_doc({"/api/v1/tasks/{task_id}": "Page"}, {"Page": {}})
        deadline = time.monotonic() + 5
        while "/api/v1/tasks/{task_id}" not in await paths():
            assert time.monotonic() < deadline
            await asyncio.sleep(0.05)

        await users_server.stop()
        await asyncio.sleep(0.5)  # a few failed refreshes
        assert "/api/v1/users/" in await paths()  # last good document kept
        status = (await gw.client.get("/api/status")).json()
        assert status["docs"]["user-service"]["error"] is not None


def test_the_merged_docs_describe_the_live_updates_socket() -> None:
    from api_gateway.main import create_app, own_schema
    from api_gateway.openapi import merge_documents
    from conftest import gateway_settings

    description = merge_documents(own_schema(create_app(gateway_settings())), {})["info"][
        "description"
    ]
    for needle in ("/api/v1/ws", "1008", "task.access_lost", "heartbeat", '"token"'):
        assert needle in description
