"""Tags in a GIN over the tags alone: the owner's part of a tag lookup is the tag keys' job.

Migration 0003_h16b put tags in a GIN over (owner_id, tags) (btree_gin), so that a tag common
among one user's tasks would not cost another. Since 0005_h16c the tag keys (`<owner>:<tag>`,
one posting list per owner and tag) answer "this user's tasks with this tag", and the owner
inside the tags' GIN only cost: to find a big account's rows with a tag, PostgreSQL intersected
that owner's posting tree (a million entries) with the tag's, 3.3-4.2 ms for a tag on 1,000
of a million tasks before a row was read, for the page and again for its count (the planner
does not price the owner's posting tree, so it took that index over the keys). Over the tags
alone the same lookup is the tag's posting list: 0.9 ms for the page, 1.0 ms for the count
(`EXPLAIN ANALYZE` on `make bench-size`'s database; docs/performance.md, issue 16). A tag
common among many users' tasks is still never read through this index for a page: a page
walks its owner's created_at range until it has its rows, and a count reads the tag keys.

The embedded PostgreSQL of `make run` (no btree_gin) already had this index (0003_h16b's
fallback); there this migration changes nothing.

Revision ID: 0007_h16f
Revises: 0006_h16d
Create Date: 2026-12-05
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007_h16f"
down_revision: str | None = "0006_h16d"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute("CREATE INDEX IF NOT EXISTS ix_task_tags ON task USING gin (tags)")
    op.execute("DROP INDEX IF EXISTS ix_task_owner_tags")


def downgrade() -> None:
    has_btree_gin = (
        op.get_bind()
        .execute(sa.text("SELECT 1 FROM pg_extension WHERE extname = 'btree_gin'"))
        .scalar()
    )
    if not has_btree_gin:
        return  # 0003_h16b's fallback: the tags' own GIN stays
    op.execute("CREATE INDEX IF NOT EXISTS ix_task_owner_tags ON task USING gin (owner_id, tags)")
    op.execute("DROP INDEX IF EXISTS ix_task_tags")
