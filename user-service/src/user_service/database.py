"""The declarative base bound to the kit's metadata naming convention."""

from __future__ import annotations

from sqlalchemy.orm import DeclarativeBase
from taskflow_kit.db import make_metadata


class Base(DeclarativeBase):
    metadata = make_metadata()
