"""Problem details (RFC 9457) errors: one base class with a status code, one set of handlers."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from starlette.exceptions import HTTPException as StarletteHTTPException

from taskflow_kit.context import current_request_id

PROBLEM_MEDIA_TYPE = "application/problem+json"
logger = structlog.get_logger("taskflow.errors")


class ProblemError(Exception):
    """Base for every expected error; subclasses set the status code and title."""

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


class PreconditionRequired(ProblemError):
    status_code = 428
    title = "Precondition Required"


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
    return problem_response(
        exc.status_code, exc.title, exc.detail, type_=exc.type, headers=exc.headers, extra=exc.extra
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


def _is_unavailable_database(exc: Exception) -> bool:
    if isinstance(exc, OperationalError | InterfaceError):
        return True
    if isinstance(exc, DBAPIError) and exc.connection_invalidated:
        return True
    # asyncpg raises plain OSError subclasses (connection refused/reset) when it cannot connect.
    return isinstance(exc, ConnectionError | TimeoutError)


async def _handle_unexpected(request: Request, exc: Exception) -> JSONResponse:
    if _is_unavailable_database(exc):
        logger.warning(
            "dependency_unavailable", path=request.url.path, error_type=type(exc).__name__
        )
        return problem_response(
            503,
            "Service Unavailable",
            "A backing service is unavailable; try again shortly",
            headers={"Retry-After": "5"},
        )
    logger.exception("unhandled_error", path=request.url.path, error_type=type(exc).__name__)
    return problem_response(500, "Internal Server Error", "An unexpected error occurred")


def install_error_handlers(app: FastAPI) -> None:
    """Render every error as problem+json; unexpected ones as a bare 500 without internals."""
    app.add_exception_handler(ProblemError, _handle_problem)
    app.add_exception_handler(StarletteHTTPException, _handle_http_exception)
    app.add_exception_handler(RequestValidationError, _handle_validation)
    app.add_exception_handler(Exception, _handle_unexpected)
