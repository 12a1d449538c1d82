"""The declarative base (with the kit's naming convention) every task-service model uses."""

from __future__ import annotations

from sqlalchemy.orm import DeclarativeBase
from taskflow_kit.db import make_metadata


class Base(DeclarativeBase):
    metadata = make_metadata()
