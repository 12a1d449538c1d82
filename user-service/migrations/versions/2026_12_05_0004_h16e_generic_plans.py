"""One cached plan for every statement whose plan does not depend on its values.

Migration 0003_h16b made this database plan every execution (`plan_cache_mode =
force_custom_plan`) so that the directory's search gets the plan its term needs. That also
planned every `/auth/me` lookup by id, login lookup, refresh-token claim and outbox row on
every call (≈ 30-40 µs of PostgreSQL CPU per BEGIN + lookup + COMMIT, measured on this
service's schema). Only the directory asks for a plan per call now (its statement is compiled
with `plan_per_call=True`, users/repository.py; at first it set the same setting on its
SQLAlchemy session, `SET LOCAL`); every other statement
keeps one generic plan, cached per connection. tests/plans checks both at size.

JIT goes off for this database too, as for task-service's (0006_h16d): nothing this service
runs is the long analytical query JIT is for, and a generic plan's estimates can cross
`jit_above_cost` for a lookup that runs in microseconds.

Revision ID: 0004_h16e
Revises: 0003_h21
Create Date: 2026-12-05
"""

from collections.abc import Sequence

from alembic import op
from taskflow_kit.migrations import alter_database

revision: str = "0004_h16e"
down_revision: str | None = "0003_h21"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

GENERIC_PLANS = alter_database(plan_cache_mode="force_generic_plan", jit="off")
CUSTOM_PLANS = alter_database(plan_cache_mode="force_custom_plan", jit=None)


def upgrade() -> None:
    op.execute(GENERIC_PLANS)


def downgrade() -> None:
    op.execute(CUSTOM_PLANS)
