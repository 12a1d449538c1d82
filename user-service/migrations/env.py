"""Alembic environment for user-service: the kit runs it (asyncpg, advisory lock)."""

from alembic import context
from taskflow_kit.migrations import run_env
from user_service.config import Settings
from user_service.models import Base

# The service's start-up and the tests pass the URL; only the alembic command line reads the
# settings (which need a JWT secret outside ENVIRONMENT=test), as in task-service.
given_url = context.config.attributes.get("database_url")
run_env(context, Base.metadata, default_url=given_url or Settings().database_url)
