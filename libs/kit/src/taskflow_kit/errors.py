"""Problem details (RFC 9457) errors: one base class with a status code, one error boundary.

Expected errors (`ProblemError`, Starlette's `HTTPException`, request validation) are rendered by
FastAPI's exception handlers. Everything else is caught by `ProblemMiddleware`, a pure-ASGI
boundary installed *inside* the request-id middleware: the body carries the request id, the
error is logged once, a database outage answers 503 with `Retry-After`, and the exception is
not re-raised to the server (uvicorn closes a keep-alive connection when the app raises, which
would cost the next request that a proxy sends on that connection).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from taskflow_kit.context import current_request_id
from taskflow_kit.dberrors import constraint_name, is_integrity_conflict, is_unavailable_database

PROBLEM_MEDIA_TYPE = "application/problem+json"
logger = structlog.get_logger("taskflow.errors")


class ProblemError(Exception):
    """Base for every expected error; subclasses set the status code and title. The request's
    transaction is rolled back: an effect that must stick although the request fails is
    committed by a named step of the route before it raises."""

    status_code: ClassVar[int] = 500
    title: ClassVar[str] = "Internal Server Error"
    type: ClassVar[str] = "about:blank"

    def __init__(
        self,
        detail: str | None = None,
        *,
        headers: Mapping[str, str] | None = None,
        extra: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(detail or self.title)
        self.detail = detail or self.title
        self.headers = dict(headers or {})
        self.extra = dict(extra or {})

    def response(self) -> JSONResponse:
        """This error as a problem+json response (with the current request id)."""
        return problem_response(
            self.status_code,
            self.title,
            self.detail,
            type_=self.type,
            headers=self.headers,
            extra=self.extra,
        )


class BadRequest(ProblemError):
    status_code = 400
    title = "Bad Request"


class Unauthorized(ProblemError):
    status_code = 401
    title = "Unauthorized"

    def __init__(self, detail: str | None = None, **kwargs: Any) -> None:
        super().__init__(detail or "Not authenticated", **kwargs)
        self.headers.setdefault("WWW-Authenticate", "Bearer")


class Forbidden(ProblemError):
    status_code = 403
    title = "Forbidden"


class NotFound(ProblemError):
    status_code = 404
    title = "Not Found"


class Conflict(ProblemError):
    status_code = 409
    title = "Conflict"


class PreconditionFailed(ProblemError):
    status_code = 412
    title = "Precondition Failed"


class UnprocessableEntity(ProblemError):
    status_code = 422
    title = "Unprocessable Entity"


class TooManyRequests(ProblemError):
    status_code = 429
    title = "Too Many Requests"

    def __init__(self, detail: str | None = None, *, retry_after: int = 1, **kwargs: Any) -> None:
        super().__init__(detail, **kwargs)
        self.headers.setdefault("Retry-After", str(max(1, retry_after)))


class ServiceUnavailable(ProblemError):
    status_code = 503
    title = "Service Unavailable"

    def __init__(self, detail: str | None = None, *, retry_after: int = 5, **kwargs: Any) -> None:
        super().__init__(detail, **kwargs)
        self.headers.setdefault("Retry-After", str(max(1, retry_after)))


class GatewayTimeout(ProblemError):
    status_code = 504
    title = "Gateway Timeout"


class Problem(BaseModel):
    """The problem+json body every error response carries."""

    type: str = "about:blank"
    title: str
    status: int
    detail: str | None = None
    request_id: str | None = None
    errors: list[dict[str, Any]] | None = None


def problem_responses(*errors: type[ProblemError]) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses=` entries for the errors a route may raise."""
    return {
        error.status_code: {
            "model": Problem,
            "description": error.title,
            "content": {PROBLEM_MEDIA_TYPE: {}},
        }
        for error in errors
    }


def problem_response(
    status: int,
    title: str,
    detail: str | None = None,
    *,
    type_: str = "about:blank",
    headers: Mapping[str, str] | None = None,
    extra: Mapping[str, Any] | None = None,
) -> JSONResponse:
    body: dict[str, Any] = {
        "type": type_,
        "title": title,
        "status": status,
        "detail": detail or title,
        "request_id": current_request_id(),
    }
    body.update(extra or {})
    return JSONResponse(
        body, status_code=status, headers=dict(headers or {}), media_type=PROBLEM_MEDIA_TYPE
    )


def _validation_errors(errors: Sequence[Any]) -> list[dict[str, Any]]:
    # Never echo the submitted input back: it may hold a password.
    return [
        {
            "loc": list(error.get("loc", ())),
            "msg": error.get("msg", ""),
            "type": error.get("type", ""),
        }
        for error in errors
    ]


async def _handle_problem(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ProblemError)
    return exc.response()


_METHODS = ("DELETE", "GET", "HEAD", "OPTIONS", "PATCH", "POST", "PUT")


def allowed_methods(request: Request) -> str:
    """Every method some route serves at this path (Starlette's 405 names only the first
    route that matched the path, though several routes may share it).

    Each method is asked of the router rather than read from the routes' `methods`: FastAPI
    nests an included router as one route that has no `methods` of its own."""
    routes = request.app.router.routes
    return ", ".join(
        method
        for method in _METHODS
        if any(
            route.matches({**request.scope, "method": method})[0] is Match.FULL for route in routes
        )
    )


async def _handle_http_exception(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    from http import HTTPStatus

    try:
        title = HTTPStatus(exc.status_code).phrase
    except ValueError:
        title = "Error"
    headers = dict(exc.headers or {})
    if exc.status_code == 401:
        headers.setdefault("WWW-Authenticate", "Bearer")
    if exc.status_code == 405:
        headers["Allow"] = allowed_methods(request)
    return problem_response(exc.status_code, title, str(exc.detail), headers=headers)


async def _handle_validation(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = _validation_errors(exc.errors())
    return problem_response(
        422,
        "Unprocessable Entity",
        "The request is not valid: see errors",
        extra={"errors": errors},
    )


def unexpected_error_response(exc: Exception, *, path: str | None) -> JSONResponse:
    """503 + Retry-After for an unreachable database; 409 for a row a concurrent change
    removed or took (a foreign key or unique violation no service turned into its own
    answer); else a bare 500. Logged once either way."""
    if is_integrity_conflict(exc):
        logger.warning(
            "integrity_conflict",
            path=path,
            error_type=type(exc).__name__,
            constraint=constraint_name(exc),
        )
        return problem_response(
            409,
            "Conflict",
            "The request conflicts with a concurrent change; reload and try again",
        )
    if is_unavailable_database(exc):
        logger.warning("dependency_unavailable", path=path, error_type=type(exc).__name__)
        return problem_response(
            503,
            "Service Unavailable",
            "A backing service is unavailable; try again shortly",
            headers={"Retry-After": "5"},
        )
    logger.error("unhandled_error", path=path, error_type=type(exc).__name__, exc_info=exc)
    return problem_response(500, "Internal Server Error", "An unexpected error occurred")


class ProblemMiddleware:
    """The error boundary: an exception raised before the answer started becomes problem+json.

    `ProblemError` is rendered with its status; anything else is logged once and answered 500
    (503 + Retry-After when the database is unreachable). The exception is not re-raised, so
    the server keeps the connection open. Install it inside the request-id middleware, so the
    body carries the request id. An exception after the answer started cannot be turned into
    a response: it is logged and the server closes the (truncated) connection.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def send_tracking(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, send_tracking)
        except Exception as exc:
            await answer_error(exc, scope, receive, send, started=started)


async def answer_error(
    exc: Exception, scope: Scope, receive: Receive, send: Send, *, started: bool
) -> None:
    """What the error boundary does with an exception: a `ProblemError` is rendered with its
    status, anything else is logged once and answered 500 (503 + Retry-After for an unreachable
    database); after the answer `started`, it is only logged. `ProblemMiddleware` is its ASGI
    form; the gateway's proxied requests use it directly (api_gateway.routing.ProxyEdge)."""
    if isinstance(exc, ProblemError):
        if started:
            logger.warning("error_after_response_started", path=scope.get("path"))
            return
        await exc.response()(scope, receive, send)
        return
    response = unexpected_error_response(exc, path=scope.get("path"))
    if not started:
        await response(scope, receive, send)


def install_error_handlers(app: FastAPI) -> None:
    """Render every error as problem+json; unexpected ones as a bare 500 without internals.

    Expected errors go through FastAPI's exception handlers; unexpected ones through
    `ProblemMiddleware`, added here as the innermost middleware (so middlewares added after it,
    such as the request-id one, wrap it).
    """
    app.add_exception_handler(ProblemError, _handle_problem)
    app.add_exception_handler(StarletteHTTPException, _handle_http_exception)
    app.add_exception_handler(RequestValidationError, _handle_validation)
    app.add_middleware(ProblemMiddleware)
