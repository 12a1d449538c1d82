"""Errors of the aggregates routes."""

from __future__ import annotations

from taskflow_kit.errors import Forbidden


class SystemScopeForbidden(Forbidden):
    def __init__(self) -> None:
        super().__init__("System-wide aggregates are for administrators")
