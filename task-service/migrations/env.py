from alembic import context
from task_service.config import Settings
from task_service.database import Base
from task_service.tasks import models  # noqa: F401  (registers the tables)
from taskflow_kit.migrations import run_env

# The service's start-up and the tests pass the URL; only the alembic command line reads the
# settings (which need a JWT secret outside ENVIRONMENT=test).
given_url = context.config.attributes.get("database_url")
run_env(context, Base.metadata, default_url=given_url or Settings().database_url)
