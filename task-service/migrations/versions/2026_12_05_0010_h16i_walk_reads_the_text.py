"""The owner's created_at index carries the text a search checks: a dense term's count reads
no row.

A search's count decides between two ways of finding its first 1,001 matches among the
caller's own tasks (`ListShape.counts_by_walking`, listing.py): the term's search keys
(0009_h16h), whose bitmap costs ≈ 0.11 µs per match, or walking the caller's tasks newest first
until 1,001 match, which stops early for a term on many of them. Walking checked each row's `search_text`
in the table: ≈ 0.32 µs a row, 5.1 ms for a term on one task in 16 of a million. With the text
(and `project_id`, which tells a personal task) in the index the walk is an index-only scan:
0.125 µs a row, 2.0 ms (`EXPLAIN ANALYZE` on `make bench-size`'s database,
docs/performance.md). The same index serves every list sorted by creation; its entries grow
by the text's length. Nothing else changes for a write: the text is in two GIN indexes
already, so an update of a title or description was never a HOT update.

Revision ID: 0010_h16i
Revises: 0009_h16h
Create Date: 2026-12-05
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0010_h16i"
down_revision: str | None = "0009_h16h"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _replace(include: str) -> None:
    """ix_task_owner_created again, with `include`: built under another name, then swapped."""
    op.execute(
        "CREATE INDEX ix_task_owner_created_next ON task (owner_id, created_at, id)" + include
    )
    op.execute("DROP INDEX ix_task_owner_created")
    op.execute("ALTER INDEX ix_task_owner_created_next RENAME TO ix_task_owner_created")


def upgrade() -> None:
    _replace(" INCLUDE (project_id, search_text)")


def downgrade() -> None:
    _replace("")
