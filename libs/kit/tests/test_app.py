"""The app base: problem+json errors, request ids, auth dependency, health and metrics."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta

import httpx
import pytest
from fastapi import FastAPI
from pydantic import BaseModel, ConfigDict, Field
from taskflow_kit.app import create_service_app
from taskflow_kit.auth import PrincipalDep, SuperuserClaimDep
from taskflow_kit.errors import Conflict, problem_responses
from taskflow_kit.health import health_router
from taskflow_kit.tokens import TokenConfig, issue_token


class Signup(BaseModel):
    model_config = ConfigDict(extra="forbid")
    username: str = Field(min_length=3)
    password: str = Field(min_length=8)


def build_app(token_config: TokenConfig, *, ready: bool = True) -> FastAPI:
    app = create_service_app(
        service="kit-test",
        title="kit test",
        version="0",
        description="",
        token_config=token_config,
    )

    async def check() -> None:
        if not ready:
            raise ConnectionError("down")

    app.include_router(health_router({"database": check}))

    @app.post("/signup", responses=problem_responses(Conflict))
    async def signup(body: Signup) -> dict[str, str]:
        if body.username == "taken":
            raise Conflict("That username is taken", extra={"field": "username"})
        return {"username": body.username}

    @app.get("/whoami")
    async def whoami(principal: PrincipalDep) -> dict[str, object]:
        return {"id": principal.id, "admin": principal.is_superuser}

    @app.get("/admin")
    async def admin(principal: SuperuserClaimDep) -> dict[str, int]:
        return {"id": principal.id}

    @app.get("/boom")
    async def boom() -> None:
        raise RuntimeError("secret internals")

    return app


@pytest.fixture
async def client(token_config: TokenConfig) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=build_app(token_config), raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        yield client


async def test_validation_error_is_problem_json_without_input(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/signup", json={"username": "ab", "password": "hunter2-secret-x", "id": 1}
    )
    assert response.status_code == 422
    assert response.headers["content-type"] == "application/problem+json"
    body = response.json()
    assert body["status"] == 422
    assert body["request_id"] == response.headers["x-request-id"]
    locations = [tuple(error["loc"]) for error in body["errors"]]
    assert ("body", "username") in locations
    assert ("body", "id") in locations
    assert "hunter2-secret-x" not in response.text


async def test_domain_error_carries_status_and_extra(client: httpx.AsyncClient) -> None:
    response = await client.post("/signup", json={"username": "taken", "password": "long-enough"})
    assert response.status_code == 409
    assert response.json()["field"] == "username"
    assert response.json()["detail"] == "That username is taken"


async def test_unknown_route_is_problem_json(client: httpx.AsyncClient) -> None:
    response = await client.get("/nope")
    assert response.status_code == 404
    assert response.headers["content-type"] == "application/problem+json"


async def test_unexpected_error_hides_internals(client: httpx.AsyncClient) -> None:
    response = await client.get("/boom")
    assert response.status_code == 500
    assert "secret internals" not in response.text
    assert response.json()["title"] == "Internal Server Error"


async def test_request_id_is_kept_or_generated(client: httpx.AsyncClient) -> None:
    kept = await client.get("/health", headers={"X-Request-ID": "abc-123"})
    assert kept.headers["x-request-id"] == "abc-123"
    generated = await client.get("/health", headers={"X-Request-ID": "bad id\nwith newline"})
    assert generated.headers["x-request-id"] != "bad id\nwith newline"
    assert len(generated.headers["x-request-id"]) == 32


async def test_missing_token_is_401_with_bearer_challenge(client: httpx.AsyncClient) -> None:
    response = await client.get("/whoami")
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"


async def test_invalid_token_is_401(client: httpx.AsyncClient) -> None:
    response = await client.get("/whoami", headers={"Authorization": "Bearer nope"})
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"


async def test_refresh_token_is_not_an_access_token(
    client: httpx.AsyncClient, token_config: TokenConfig
) -> None:
    token = issue_token(token_config, subject="7", token_type="refresh", ttl=timedelta(minutes=1))
    response = await client.get("/whoami", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 401


async def test_valid_token_and_admin_rule(
    client: httpx.AsyncClient, token_config: TokenConfig
) -> None:
    user = issue_token(token_config, subject="7", token_type="access", ttl=timedelta(minutes=1))
    admin = issue_token(
        token_config,
        subject="8",
        token_type="access",
        ttl=timedelta(minutes=1),
        claims={"is_superuser": True},
    )
    assert (await client.get("/whoami", headers={"Authorization": f"Bearer {user}"})).json() == {
        "id": 7,
        "admin": False,
    }
    assert (
        await client.get("/admin", headers={"Authorization": f"Bearer {user}"})
    ).status_code == 403
    assert (await client.get("/admin", headers={"Authorization": f"Bearer {admin}"})).json() == {
        "id": 8
    }


async def test_ready_reports_failing_dependency(token_config: TokenConfig) -> None:
    transport = httpx.ASGITransport(app=build_app(token_config, ready=False))
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        response = await client.get("/ready")
    assert response.status_code == 503
    assert response.json()["checks"]["database"]["status"] == "down"


async def test_metrics_use_route_templates(client: httpx.AsyncClient) -> None:
    await client.get("/health")
    response = await client.get("/metrics")
    assert response.status_code == 200
    assert 'route="/health"' in response.text
    assert "taskflow_http_request_duration_seconds_bucket" in response.text


async def test_openapi_documents_validation_errors_as_problem_json(
    client: httpx.AsyncClient,
) -> None:
    schema = (await client.get("/openapi.json")).json()
    unprocessable = schema["paths"]["/signup"]["post"]["responses"]["422"]
    assert list(unprocessable["content"]) == ["application/problem+json"]
    assert "HTTPValidationError" not in schema["components"]["schemas"]
    assert "Problem" in schema["components"]["schemas"]


async def test_405_allow_lists_every_method_of_the_path(token_config: TokenConfig) -> None:
    app = build_app(token_config)

    @app.get("/thing")
    async def read_thing() -> dict[str, str]:
        return {}

    @app.delete("/thing")
    async def delete_thing() -> None:
        return None

    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        response = await client.options("/thing")
    assert response.status_code == 405
    assert response.headers["allow"] == "DELETE, GET"


async def test_openapi_documents_400_422_for_bodies_and_503_everywhere(
    client: httpx.AsyncClient,
) -> None:
    paths = (await client.get("/openapi.json")).json()["paths"]
    signup = paths["/signup"]["post"]["responses"]
    assert {"400", "422", "503"} <= set(signup)
    assert list(signup["400"]["content"]) == ["application/problem+json"]
    whoami = paths["/whoami"]["get"]["responses"]
    assert "503" in whoami
    assert "400" not in whoami


async def test_a_route_written_once_answers_with_and_without_its_trailing_slash() -> None:
    from fastapi import APIRouter, Depends, FastAPI
    from taskflow_kit.app import add_slashless_aliases

    calls: list[str] = []

    async def counted() -> None:
        calls.append("dependency")

    router = APIRouter(prefix="/things")

    @router.post("/", status_code=201, dependencies=[Depends(counted)])
    async def create() -> dict[str, str]:
        return {"made": "yes"}

    app = FastAPI()
    app.include_router(add_slashless_aliases(router))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        answers = [await client.post(path) for path in ("/things/", "/things")]
    assert [(r.status_code, r.json()) for r in answers] == [(201, {"made": "yes"})] * 2
    assert calls == ["dependency", "dependency"]
    assert list(app.openapi()["paths"]) == ["/things/"]


def test_the_token_verifier_is_a_typed_attribute_of_the_app_not_an_app_state_key(
    token_config: TokenConfig,
) -> None:
    from taskflow_kit.auth import AuthenticatingApp

    app = build_app(token_config)
    assert isinstance(app, AuthenticatingApp)
    assert app.token_verifier.config == token_config
    assert getattr(app.state, "token_verifier", None) is None
