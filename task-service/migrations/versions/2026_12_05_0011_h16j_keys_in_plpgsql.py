"""The owner keys' functions in PL/pgSQL: a write no longer plans a SQL function body.

`task_tag_keys` (0005_h16c) and `task_search_keys` (0009_h16h) were SQL functions with a
subquery, which PostgreSQL cannot inline: every statement that evaluates one (each insert or
update of a personal task, for its index entries; each tag or search count, when the planner
folds the caller's keys) parsed and planned the function's body again. PL/pgSQL keeps the
body's plan for the session. Same results, so the indexes over them stay valid.

Measured with pgbench, one single-row insert per transaction (the API's create), 4,000 per run,
three rounds alternating (docs/performance.md, session 9): 0.452 ms without the search keys'
index, 0.547 ms with it as a SQL function, 0.490 ms as PL/pgSQL.

Revision ID: 0011_h16j
Revises: 0010_h16i
Create Date: 2026-12-05
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0011_h16j"
down_revision: str | None = "0010_h16i"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_SIGNATURES = {
    "task_tag_keys": ("tags text[]", "text[]"),
    "task_search_keys": ("search_text text", "bigint[]"),
}
_BODIES = {
    "task_tag_keys": "array(SELECT scope::text || ':' || tag FROM unnest(tags) AS tag)",
    "task_search_keys": (
        "array(SELECT hashtextextended(substr(search_text, i, 3), scope) "
        "FROM generate_series(1, length(search_text) - 2) AS i)"
    ),
}


def _define(name: str, language: str) -> str:
    argument, result = _SIGNATURES[name]
    value = _BODIES[name]
    body = f"BEGIN RETURN {value}; END" if language == "plpgsql" else f"SELECT {value}"
    return (
        f"CREATE OR REPLACE FUNCTION {name}(scope bigint, {argument}) RETURNS {result} "
        f"LANGUAGE {language} IMMUTABLE STRICT PARALLEL SAFE AS $$ {body} $$"
    )


def upgrade() -> None:
    for name in _BODIES:
        op.execute(_define(name, "plpgsql"))


def downgrade() -> None:
    for name in _BODIES:
        op.execute(_define(name, "sql"))
