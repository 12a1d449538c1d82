"""The FastAPI application base every service starts from."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from contextlib import AbstractAsyncContextManager
from typing import Any

from fastapi import APIRouter, FastAPI
from fastapi.openapi.utils import get_openapi
from fastapi.routing import APIRoute

from taskflow_kit.auth import AuthenticatingApp, TokenVerifier
from taskflow_kit.docs import install_docs_pages
from taskflow_kit.errors import PROBLEM_MEDIA_TYPE, Problem, install_error_handlers
from taskflow_kit.logs import RequestContextMiddleware
from taskflow_kit.metrics import metrics_router
from taskflow_kit.revocation import RevocationList
from taskflow_kit.tokens import TokenConfig


def create_service_app(
    *,
    service: str,
    title: str,
    version: str,
    description: str,
    token_config: TokenConfig,
    revocations: RevocationList | None = None,
    lifespan: Callable[[FastAPI], AbstractAsyncContextManager[None]]
    | Callable[[FastAPI], AbstractAsyncContextManager[Mapping[str, Any]]]
    | None = None,
    **fastapi_kwargs: Any,
) -> FastAPI:
    """A FastAPI app with problem+json errors, request ids, access logs, `/metrics`, and
    `/docs` and `/redoc` served from the service itself (`taskflow_kit.docs`)."""
    app = AuthenticatingApp(
        token_verifier=TokenVerifier(token_config, revocations),
        title=title,
        version=version,
        description=description,
        lifespan=lifespan,
        docs_url=None,  # FastAPI's pages load their files from a CDN: ours below do not
        redoc_url=None,
        **fastapi_kwargs,
    )
    install_error_handlers(app)
    app.add_middleware(RequestContextMiddleware, service=service)
    app.include_router(metrics_router)
    install_docs_pages(app)
    _document_validation_errors_as_problems(app)
    return app


def add_slashless_aliases(router: APIRouter) -> APIRouter:
    """Give every route of `router` whose path ends in `/` a twin without the slash, hidden
    from the schema: clients written against either spelling work, and the route is written
    once (call after the routes are declared)."""
    for route in list(router.routes):
        if not isinstance(route, APIRoute) or not route.path.endswith("/") or route.path == "/":
            continue
        router.add_api_route(
            route.path[len(router.prefix) : -1],
            route.endpoint,
            methods=sorted(route.methods or ()),
            status_code=route.status_code,
            response_model=route.response_model,
            response_class=route.response_class,
            dependencies=route.dependencies[len(router.dependencies) :],
            name=route.name,
            include_in_schema=False,
        )
    return router


def _document_validation_errors_as_problems(app: FastAPI) -> None:
    """FastAPI documents 422 as `application/json` HTTPValidationError; ours are problem+json.

    Also documents what every route can answer beyond its own errors: 400 and 422 where it
    takes a body, 503 everywhere."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        schema = get_openapi(
            title=app.title,
            version=app.version,
            description=app.description,
            routes=app.routes,
            tags=app.openapi_tags,
        )
        components = schema.setdefault("components", {}).setdefault("schemas", {})
        components["Problem"] = Problem.model_json_schema(
            ref_template="#/components/schemas/{model}"
        )
        problem = {PROBLEM_MEDIA_TYPE: {"schema": {"$ref": "#/components/schemas/Problem"}}}
        for operations in schema.get("paths", {}).values():
            for operation in operations.values():
                if not isinstance(operation, dict):
                    continue
                responses = operation.setdefault("responses", {})
                if "requestBody" in operation:
                    # A body that is not JSON at all (or nested past the parser) is 400; one
                    # that parses but does not validate is 422 — on every route with a body.
                    responses.setdefault("400", {"description": "The body could not be parsed"})
                    responses.setdefault("422", {"description": "Validation Error"})
                # Any route may find its database or upstream unavailable (with Retry-After).
                responses.setdefault("503", {"description": "Service Unavailable"})
                for status in ("400", "422", "503"):
                    if status in responses:
                        responses[status]["content"] = problem
        components.pop("HTTPValidationError", None)
        components.pop("ValidationError", None)
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
