"""The search keys' function in PL/pgSQL: a write no longer plans a SQL function body.

`task_search_keys` (0009_h16h) was a SQL function with a subquery, which PostgreSQL cannot
inline: every statement that evaluates it (each insert or update of a personal task, for its
index entries; each search count, when the planner folds the caller's keys) parsed and planned
the function's body again. PL/pgSQL keeps the body's plan for the session. Same results, so the
index over it stays valid.

Measured with pgbench, one single-row insert per transaction (the API's create), 4,000 per run,
three rounds alternating (docs/performance.md, session 9): 0.452 ms without the search keys'
index, 0.547 ms with it as a SQL function, 0.490 ms as PL/pgSQL.

The tag keys' function (0005_h16c) stays SQL. A count of a tag on a third of the big user's
tasks scans until 1,001 match and evaluates the tag keys as a filter on every row it reads;
there a SQL function, planned once per statement, costs less per row than a PL/pgSQL call:
that count took 14.0 ms with PL/pgSQL against 7.2 ms (`TaskRepository.find_page`, medians of
20, on `make bench-size`'s database). The search keys are never such a filter: a dense term's
count walks without them (`ListShape.counts_by_walking`).

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

_KEYS = (
    "array(SELECT hashtextextended(substr(search_text, i, 3), scope) "
    "FROM generate_series(1, length(search_text) - 2) AS i)"
)
_SIGNATURE = "task_search_keys(scope bigint, search_text text) RETURNS bigint[]"


def upgrade() -> None:
    op.execute(
        f"CREATE OR REPLACE FUNCTION {_SIGNATURE} LANGUAGE plpgsql IMMUTABLE STRICT "
        f"PARALLEL SAFE AS $$ BEGIN RETURN {_KEYS}; END $$"
    )


def downgrade() -> None:
    op.execute(
        f"CREATE OR REPLACE FUNCTION {_SIGNATURE} LANGUAGE sql IMMUTABLE STRICT "
        f"PARALLEL SAFE AS $$ SELECT {_KEYS} $$"
    )
