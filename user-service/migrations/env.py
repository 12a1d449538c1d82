"""Alembic environment for user-service: the kit runs it (asyncpg, advisory lock)."""

from alembic import context
from taskflow_kit.migrations import run_env
from user_service.config import Settings
from user_service.models import Base

# A caller that names the database (the service at start, the tests) needs no settings; the
# `alembic upgrade` command line reads them (and validates them as the service would).
given_url = context.config.attributes.get("database_url")
run_env(context, Base.metadata, default_url=given_url or Settings().database_url)
