"""Errors the gateway answers itself (rendered as problem+json by the kit's handlers)."""

from __future__ import annotations

from taskflow_kit.errors import ProblemError


class PayloadTooLarge(ProblemError):
    status_code = 413
    title = "Content Too Large"


class BadGateway(ProblemError):
    status_code = 502
    title = "Bad Gateway"
