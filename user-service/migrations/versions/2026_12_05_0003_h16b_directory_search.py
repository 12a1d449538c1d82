"""The directory's search (`GET /users/?q=`) on trigram indexes: a substring of a username, a
full name or (administrators' view) an email is found without reading every account.

The directory's best plan depends on the term (a trigram bitmap for a rare one, the username
index for a common one), so this database plans every execution of its prepared statements for
their values (`plan_cache_mode = force_custom_plan`) instead of settling on one generic plan.

pg_trgm is a contrib extension that the embedded PostgreSQL of `make run` (pgserver) does not
ship; there the directory keeps scanning (correct, slower with many accounts).

Revision ID: 0003_h16b
Revises: 0002
Create Date: 2026-12-05
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003_h16b"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute(
        "DO $$ BEGIN EXECUTE format("
        "'ALTER DATABASE %I SET plan_cache_mode = force_custom_plan', current_database()); "
        "END $$"
    )
    has_trgm = (
        op.get_bind()
        .execute(sa.text("SELECT 1 FROM pg_available_extensions WHERE name = 'pg_trgm'"))
        .scalar()
    )
    if not has_trgm:
        return
    op.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")
    op.execute(
        "CREATE INDEX IF NOT EXISTS ix_user_account_names_trgm ON user_account "
        "USING gin (username gin_trgm_ops, full_name gin_trgm_ops)"
    )
    op.execute(
        "CREATE INDEX IF NOT EXISTS ix_user_account_email_trgm ON user_account "
        "USING gin (email gin_trgm_ops)"
    )


def downgrade() -> None:
    op.execute(
        "DO $$ BEGIN EXECUTE format("
        "'ALTER DATABASE %I RESET plan_cache_mode', current_database()); END $$"
    )
    op.execute("DROP INDEX IF EXISTS ix_user_account_email_trgm")
    op.execute("DROP INDEX IF EXISTS ix_user_account_names_trgm")
