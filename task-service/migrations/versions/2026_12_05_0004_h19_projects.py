"""Projects: project, project_member, and task.project_id.

Revision ID: 0004_h19
Revises: 0003_h16b
Create Date: 2026-12-05
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004_h19"
down_revision: str | None = "0003_h16b"
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
PROJECT_BTREES = {
    "ix_task_project_created": "created_at",
    "ix_task_project_updated": "updated_at",
    "ix_task_project_due_asc": "coalesce(due_date, CAST('infinity' AS timestamptz))",
    "ix_task_project_due_desc": "coalesce(due_date, CAST('-infinity' AS timestamptz))",
    "ix_task_project_priority": f"({PRIORITY_RANK})",
    "ix_task_project_status": f"({STATUS_RANK})",
    "ix_task_project_title": '(lower(title) COLLATE "C")',
}


def _deltas(sign: int, rows: str, personal_only: bool) -> str:
    """0003_h16b's deltas, of personal tasks only when `personal_only`."""
    only = "AND project_id IS NULL" if personal_only else ""
    return f"""
        SELECT owner_id AS user_id, true AS owned, status, priority, {sign} AS tasks
        FROM {rows} WHERE true {only}
        UNION ALL
        SELECT assignee_id, false, status, priority, {sign} FROM {rows}
        WHERE assignee_id IS NOT NULL AND assignee_id <> owner_id {only}"""  # noqa: S608


def _tally_from(*parts: str) -> str:
    return f"""
        INSERT INTO task_tally (user_id, owned, status, priority, tasks)
        SELECT user_id, owned, status, priority, sum(tasks)
        FROM ({" UNION ALL ".join(parts)}) AS change
        GROUP BY user_id, owned, status, priority
        HAVING sum(tasks) <> 0;"""  # noqa: S608 (this module's own texts)


def tally_function(personal_only: bool) -> str:
    """0003_h16b's task_tally_changed(), replaced."""
    new = _deltas(1, "new_rows", personal_only)
    old = _deltas(-1, "old_rows", personal_only)
    return f"""
CREATE OR REPLACE FUNCTION task_tally_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        {_tally_from(new)}
    ELSIF TG_OP = 'DELETE' THEN
        {_tally_from(old)}
    ELSE
        {_tally_from(new, old)}
    END IF;
    RETURN NULL;
END
$$
"""


def upgrade() -> None:
    op.create_table(
        "project",
        sa.Column("id", sa.BigInteger(), sa.Identity(), nullable=False),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("owner_id", sa.BigInteger(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("version", sa.Integer(), server_default=sa.text("1"), nullable=False),
        sa.CheckConstraint("version >= 1", name=op.f("ck_project_version_positive")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_project")),
    )
    op.create_table(
        "project_member",
        sa.Column("project_id", sa.BigInteger(), nullable=False),
        sa.Column("user_id", sa.BigInteger(), nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("added_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "role IN ('owner', 'admin', 'member')", name=op.f("ck_project_member_role_valid")
        ),
        sa.ForeignKeyConstraint(
            ["project_id"],
            ["project.id"],
            name=op.f("fk_project_member_project_id_project"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("project_id", "user_id", name=op.f("pk_project_member")),
    )
    op.create_index(
        "ix_project_member_user_id_project_id", "project_member", ["user_id", "project_id"]
    )
    # Nullable with no default: adding it rewrites nothing, existing tasks stay personal.
    op.add_column("task", sa.Column("project_id", sa.BigInteger(), nullable=True))
    op.create_foreign_key(
        op.f("fk_task_project_id_project"),
        "task",
        "project",
        ["project_id"],
        ["id"],
        ondelete="CASCADE",
    )
    # One project's page in any order is a range of one of these (the owner-led indexes of
    # 0003_h16b, led by project_id instead).
    for name, columns in PROJECT_BTREES.items():
        op.execute(
            f"CREATE INDEX IF NOT EXISTS {name} ON task (project_id, {columns}, id) "
            "WHERE project_id IS NOT NULL"
        )
    # The running counts (task_tally) keep personal tasks only: a project's tasks are every
    # member's, counted per project instead. Every task is personal at this point (project_id
    # was just added), so the counts already kept stay right.
    op.execute(tally_function(personal_only=True))


def downgrade() -> None:
    op.execute(tally_function(personal_only=False))
    for name in PROJECT_BTREES:
        op.execute(f"DROP INDEX IF EXISTS {name}")
    op.drop_constraint(op.f("fk_task_project_id_project"), "task", type_="foreignkey")
    op.drop_column("task", "project_id")
    # Former project tasks are their owners' personal tasks again: count them afresh.
    op.execute("DELETE FROM task_tally")
    op.execute(_tally_from(_deltas(1, "task", personal_only=False)))
    op.drop_index("ix_project_member_user_id_project_id", table_name="project_member")
    op.drop_table("project_member")
    op.drop_table("project")
