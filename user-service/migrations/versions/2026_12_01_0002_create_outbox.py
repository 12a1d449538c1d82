"""Create the outbox (events written with each change) and its commit-time NOTIFY trigger.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-01
"""

from collections.abc import Sequence

from alembic import op
from taskflow_kit.outbox import create_outbox_v1, drop_outbox_v1

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    create_outbox_v1(op)


def downgrade() -> None:
    drop_outbox_v1(op)
