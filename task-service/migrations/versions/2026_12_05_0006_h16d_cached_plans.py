"""One cached plan for every statement whose plan does not depend on its values.

Migration 0003_h16b made this database plan every execution (`plan_cache_mode =
force_custom_plan`) so that a tag or search listing gets the plan its values need. That also
planned every read by id, insert, update, outbox row and visibility check on every call: with
`task`'s twenty indexes a plan costs more than running it, and PostgreSQL's CPU per read rose
4x (`make bench COMPARE=8f6a2f8`, docs/performance.md). The listings that filter now ask for
their own plan per call (`Statement.plan_per_call`, tasks/listing.py); every other statement
gets one generic plan, cached per connection (`force_generic_plan`: PostgreSQL's own default
would keep planning the listings per call, because a generic plan's estimate for `LIMIT $n`
looks worse than a planned one's). tests/plans checks those generic plans at size: each reads
an index range, for the big user and the small one alike.

JIT goes off for this database too. A generic plan does not know `LIMIT $n` and costs a page as
if it read a tenth of the table: over `jit_above_cost` at a million rows, so PostgreSQL compiled
the page's expressions before running it, 30-40 ms for a page that runs in 0.3 ms (measured on
the size benchmark's database). Nothing this service runs is the long analytical query JIT is
for.

Revision ID: 0006_h16d
Revises: 0005_h16c
Create Date: 2026-12-05
"""

from collections.abc import Sequence

from alembic import op
from taskflow_kit.migrations import alter_database

revision: str = "0006_h16d"
down_revision: str | None = "0005_h16c"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

GENERIC_PLANS = alter_database(plan_cache_mode="force_generic_plan", jit="off")
CUSTOM_PLANS = alter_database(plan_cache_mode="force_custom_plan", jit=None)


def upgrade() -> None:
    op.execute(GENERIC_PLANS)


def downgrade() -> None:
    op.execute(CUSTOM_PLANS)
