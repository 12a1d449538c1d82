"""The FastAPI application base every service starts from."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from typing import Any

from fastapi import FastAPI

from taskflow_kit.errors import install_error_handlers
from taskflow_kit.logs import RequestContextMiddleware
from taskflow_kit.metrics import MetricsMiddleware, metrics_router
from taskflow_kit.tokens import TokenConfig

Lifespan = Callable[[FastAPI], AbstractAsyncContextManager[None] | AsyncIterator[None]]


def create_service_app(
    *,
    service: str,
    title: str,
    version: str,
    description: str,
    token_config: TokenConfig,
    lifespan: Callable[[FastAPI], AbstractAsyncContextManager[None]] | None = None,
    **fastapi_kwargs: Any,
) -> FastAPI:
    """A FastAPI app with problem+json errors, request ids, access logs and `/metrics`."""
    app = FastAPI(
        title=title,
        version=version,
        description=description,
        lifespan=lifespan,
        **fastapi_kwargs,
    )
    app.state.token_config = token_config
    install_error_handlers(app)
    app.add_middleware(MetricsMiddleware, service=service)
    app.add_middleware(RequestContextMiddleware)
    app.include_router(metrics_router)
    return app
