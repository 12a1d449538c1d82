"""A user's pages and counts at any size: an index per sort key, tags and search scoped by
owner, and running task counts kept by triggers.

A user's list is `owner_id = me` (plus the few tasks assigned to them) in one of six orders, with
keyset pages: each order gets a btree (owner_id, key, id), so a page is a range of one index
whatever other users hold. Tags and text search go into GIN indexes led by owner_id (btree_gin),
so a rare tag or term of one user never walks another user's matches. The single-column indexes
they replace (owner, assignee, status, due date, created_at, tags, title and description
trigrams over every user's rows) go.

`/stats/` must not count a million rows: `task_tally` holds running counts by user, status and
priority, written by statement-level triggers on `task` (one delta row per group a statement
changes, never an update of a shared counter row: no lock contention, no deadlock between
writers). The time-windowed counts (overdue, due soon, completed lately, per day) read two
partial indexes in ranges.

Statements run as prepared statements (asyncpg caches them per connection), and after five runs
PostgreSQL may switch a statement to one generic plan for every parameter value. A listing's best
plan depends on whose tasks and which tag or term it is (an ordered index walk for the big user's
common tag, a GIN bitmap for the small user's): one plan for all is wrong for some, by 20x and
more (measured: the small user's tag count went from 0.7 ms to 19 ms at the sixth run). So this
database plans every execution for its values (`plan_cache_mode = force_custom_plan`, for new
sessions); planning one of these statements costs a few tenths of a millisecond.

Indexes are built inside the migration's transaction (the migration runner holds one), which
blocks writes to `task` while they build: about 30 s for a million rows on the development
machine. On a larger live table, build them first with CREATE INDEX under the same
names and definitions: every CREATE here says IF NOT EXISTS and skips them.

The sort-key expressions here are the texts of task_service.tasks.models (*_SQL), frozen as
they were at this revision: PostgreSQL uses an expression index only for the same expression.

Revision ID: 0003_h16b
Revises: 0003_h16a
Create Date: 2026-12-05
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003_h16b"
down_revision: str | None = "0003_h16a"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

PRIORITY_RANK = (
    "CASE WHEN priority = 'low' THEN 0 WHEN priority = 'medium' THEN 1 "
    "WHEN priority = 'high' THEN 2 WHEN priority = 'urgent' THEN 3 END"
)
STATUS_RANK = (
    "CASE WHEN status = 'todo' THEN 0 WHEN status = 'in_progress' THEN 1 "
    "WHEN status = 'done' THEN 2 END"
)
BTREES = {
    "ix_task_owner_created": "owner_id, created_at, id",
    "ix_task_owner_updated": "owner_id, updated_at, id",
    "ix_task_owner_due_asc": "owner_id, coalesce(due_date, CAST('infinity' AS timestamptz)), id",
    "ix_task_owner_due_desc": "owner_id, coalesce(due_date, CAST('-infinity' AS timestamptz)), id",
    "ix_task_owner_priority": f"owner_id, ({PRIORITY_RANK}), id",
    "ix_task_owner_status": f"owner_id, ({STATUS_RANK}), id",
    "ix_task_owner_title": 'owner_id, (lower(title) COLLATE "C"), id',
}
PARTIAL = {
    "ix_task_owner_open_due": "task (owner_id, due_date) WHERE status <> 'done'",
    "ix_task_owner_completed": "task (owner_id, completed_at) WHERE completed_at IS NOT NULL",
}
REPLACED = [
    "ix_task_owner_id",
    "ix_task_assignee_id",
    "ix_task_status",
    "ix_task_due_date",
    "ix_task_created_at",
]
REPLACED_WITH_EXTENSIONS = ["ix_task_tags", "ix_task_title_trgm", "ix_task_description_trgm"]


def _available(name: str) -> bool:
    return bool(
        op.get_bind()
        .execute(
            sa.text("SELECT 1 FROM pg_available_extensions WHERE name = :name"), {"name": name}
        )
        .scalar()
    )


# One delta row per (user, owned, status, priority) group a statement changes: +1 per new row,
# -1 per old row, for its owner and for its assignee when that is someone else.
_DELTAS = """
    SELECT owner_id AS user_id, true AS owned, status, priority, {sign} AS tasks FROM {rows}
    UNION ALL
    SELECT assignee_id, false, status, priority, {sign} FROM {rows}
    WHERE assignee_id IS NOT NULL AND assignee_id <> owner_id
"""


def _tally_from(*parts: str) -> str:
    return f"""
        INSERT INTO task_tally (user_id, owned, status, priority, tasks)
        SELECT user_id, owned, status, priority, sum(tasks)
        FROM ({" UNION ALL ".join(parts)}) AS change
        GROUP BY user_id, owned, status, priority
        HAVING sum(tasks) <> 0;"""  # noqa: S608 (this module's own texts)


TALLY_FUNCTION = f"""
CREATE FUNCTION task_tally_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        {_tally_from(_DELTAS.format(sign=1, rows="new_rows"))}
    ELSIF TG_OP = 'DELETE' THEN
        {_tally_from(_DELTAS.format(sign=-1, rows="old_rows"))}
    ELSE
        {_tally_from(_DELTAS.format(sign=1, rows="new_rows"), _DELTAS.format(sign=-1, rows="old_rows"))}
    END IF;
    RETURN NULL;
END
$$
"""


def _create_tally() -> None:
    op.create_table(
        "task_tally",
        sa.Column("id", sa.BigInteger(), sa.Identity(), nullable=False),
        sa.Column("user_id", sa.BigInteger(), nullable=False),
        sa.Column("owned", sa.Boolean(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("priority", sa.String(length=16), nullable=False),
        sa.Column("tasks", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_task_tally")),
    )
    op.create_index("ix_task_tally_user_id", "task_tally", ["user_id"])
    # Lock out writers while the counts start from the rows as they are, so no change falls
    # between the initial counts and the triggers.
    op.execute("LOCK TABLE task IN SHARE ROW EXCLUSIVE MODE")
    op.execute(TALLY_FUNCTION)
    # Transition tables are allowed only on single-event triggers: one trigger per event.
    for event, referencing in [
        ("INSERT", "NEW TABLE AS new_rows"),
        ("DELETE", "OLD TABLE AS old_rows"),
        ("UPDATE", "NEW TABLE AS new_rows OLD TABLE AS old_rows"),
    ]:
        op.execute(
            f"CREATE TRIGGER task_tally_{event.lower()} AFTER {event} ON task "
            f"REFERENCING {referencing} FOR EACH STATEMENT EXECUTE FUNCTION task_tally_changed()"
        )
    op.execute(_tally_from(_DELTAS.format(sign=1, rows="task")))


CUSTOM_PLANS = """
DO $$
BEGIN
    EXECUTE format('ALTER DATABASE %I SET plan_cache_mode = force_custom_plan', current_database());
END
$$
"""
DEFAULT_PLANS = """
DO $$
BEGIN
    EXECUTE format('ALTER DATABASE %I RESET plan_cache_mode', current_database());
END
$$
"""


def upgrade() -> None:
    op.execute(CUSTOM_PLANS)
    _create_tally()
    # pg_trgm and btree_gin are contrib extensions: every packaged PostgreSQL has them, the
    # embedded one of `make run` (pgserver) does not; there tags keep a GIN over every user's
    # rows and search scans the caller's own tasks (correct, slower at size).
    extensions = _available("pg_trgm") and _available("btree_gin")
    if extensions:
        op.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")
        op.execute("CREATE EXTENSION IF NOT EXISTS btree_gin")
    for name, columns in BTREES.items():
        op.execute(f"CREATE INDEX IF NOT EXISTS {name} ON task ({columns})")
    op.execute(
        "CREATE INDEX IF NOT EXISTS ix_task_assignee_created "
        "ON task (assignee_id, created_at, id) WHERE assignee_id IS NOT NULL"
    )
    for name, definition in PARTIAL.items():
        op.execute(f"CREATE INDEX IF NOT EXISTS {name} ON {definition}")
    if extensions:
        op.execute(
            "CREATE INDEX IF NOT EXISTS ix_task_owner_tags ON task USING gin (owner_id, tags)"
        )
        op.execute(
            "CREATE INDEX IF NOT EXISTS ix_task_owner_text_trgm ON task "
            "USING gin (owner_id, title gin_trgm_ops, description gin_trgm_ops)"
        )
    for name in REPLACED + (REPLACED_WITH_EXTENSIONS if extensions else []):
        op.execute(f"DROP INDEX IF EXISTS {name}")


def downgrade() -> None:
    op.execute(DEFAULT_PLANS)
    for event in ("insert", "delete", "update"):
        op.execute(f"DROP TRIGGER IF EXISTS task_tally_{event} ON task")
    op.execute("DROP FUNCTION IF EXISTS task_tally_changed()")
    op.drop_table("task_tally")
    for name in [*BTREES, *PARTIAL, "ix_task_assignee_created", "ix_task_owner_tags"]:
        op.execute(f"DROP INDEX IF EXISTS {name}")
    op.execute("DROP INDEX IF EXISTS ix_task_owner_text_trgm")
    for name, column in [
        ("ix_task_owner_id", "owner_id"),
        ("ix_task_assignee_id", "assignee_id"),
        ("ix_task_status", "status"),
        ("ix_task_due_date", "due_date"),
        ("ix_task_created_at", "created_at"),
    ]:
        op.execute(f"CREATE INDEX IF NOT EXISTS {name} ON task ({column})")
    op.execute("CREATE INDEX IF NOT EXISTS ix_task_tags ON task USING gin (tags)")
    if _available("pg_trgm"):
        op.execute(
            "CREATE INDEX IF NOT EXISTS ix_task_title_trgm ON task USING gin (title gin_trgm_ops)"
        )
        op.execute(
            "CREATE INDEX IF NOT EXISTS ix_task_description_trgm "
            "ON task USING gin (description gin_trgm_ops)"
        )
