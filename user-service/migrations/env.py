"""Alembic environment for user-service: the kit runs it (asyncpg, advisory lock)."""

from alembic import context
from taskflow_kit.migrations import run_env
from user_service.config import Settings
from user_service.models import Base

run_env(context, Base.metadata, default_url=Settings().database_url)
