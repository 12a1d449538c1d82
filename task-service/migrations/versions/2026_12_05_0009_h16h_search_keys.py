"""Search finds one user's matches from that user's own posting lists: a GIN over search keys.

The trigram GIN over (owner_id, search_text) (btree_gin + pg_trgm, 0008_h16g) answered "this
user's tasks containing this term" by intersecting the owner's posting tree with the term's
trigrams. For a big account the owner's part is a million entries: a term on 1,000 of a
million tasks spent 6.9 ms of its 10.2 ms decoding that tree before a row was read, against
0.2 ms for the same term among 10,000 tasks. Looking up the trigrams alone and checking the
owner afterwards reads every user's candidates, so a term common in another tenant's tasks
would cost this one their rows.

`task_search_keys(owner_id, search_text)` gives each personal task one key per (owner, three
consecutive characters of its lowered text): a 64-bit hash of the three characters, seeded
with the owner id (`hashtextextended`). A search for a term of three characters or more asks
for every key of the term under the caller's id, so the index reads the caller's own posting
lists only, whatever anyone else holds, the same way the tag keys do (0005_h16c). The keys
are a filter, never the answer: `search_text LIKE lower(pattern)` still decides, so a hash
collision can only cost a row checked for nothing, never a wrong match. Any three consecutive
characters of a term found in a text are three consecutive characters of that text, so no
match is lost (tests/tasks/test_search.py checks the API against PostgreSQL's own `ILIKE`).

The keys serve the statements that count a search's matches (`ListShape.matches` and the
total), where the condition is added beside the `LIKE` (listing.py). The trigram GIN stays for
the page statement, which runs only when a term has more than 1,000 matches: there the planner,
from its sampled estimate of the `LIKE`, walks the sort index for a common term and uses the
GIN for a sparse one. With the keys in the page statement too, their estimate (the product of
the trigrams' frequencies, as if they were independent: 29 rows for a term on 62,500 of the big
user's tasks) made the planner build a bitmap of every match before sorting, 9 ms where the
walk takes 0.3 ms.

It needs no extension, so the embedded PostgreSQL of `make run` gets an indexed count too. The
statistics object gives the planner the keys' frequencies, as for the tag keys.

Revision ID: 0009_h16h
Revises: 0008_h16g
Create Date: 2026-12-05
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0009_h16h"
down_revision: str | None = "0008_h16g"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Every run of three characters (not bytes) of the text, hashed with the owner id as seed.
# Immutable: the same characters and seed give the same key on every PostgreSQL version
# (hash partitioning relies on these functions staying stable).
SEARCH_KEYS = """
CREATE OR REPLACE FUNCTION task_search_keys(scope bigint, search_text text) RETURNS bigint[]
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
AS $$
SELECT array(
    SELECT hashtextextended(substr(search_text, i, 3), scope)
    FROM generate_series(1, length(search_text) - 2) AS i
)
$$
"""


def upgrade() -> None:
    op.execute(SEARCH_KEYS)
    op.execute(
        "CREATE INDEX IF NOT EXISTS ix_task_owner_search_keys ON task "
        "USING gin (task_search_keys(owner_id, search_text)) WHERE project_id IS NULL"
    )
    op.execute(
        "CREATE STATISTICS IF NOT EXISTS st_task_owner_search_keys "
        "ON (task_search_keys(owner_id, search_text)) FROM task"
    )


def downgrade() -> None:
    op.execute("DROP STATISTICS IF EXISTS st_task_owner_search_keys")
    op.execute("DROP INDEX IF EXISTS ix_task_owner_search_keys")
    op.execute("DROP FUNCTION IF EXISTS task_search_keys(bigint, text)")
