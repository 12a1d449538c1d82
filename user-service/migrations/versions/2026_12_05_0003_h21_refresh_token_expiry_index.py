"""Index refresh_token.expires_at and revoked_at, for the periodic pruning of dead tokens.

Revision ID: 0003_h21
Revises: 0002
Create Date: 2026-12-05
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0003_h21"
down_revision: str | None = "0003_h16b"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index(op.f("ix_refresh_token_expires_at"), "refresh_token", ["expires_at"])
    op.create_index(op.f("ix_refresh_token_revoked_at"), "refresh_token", ["revoked_at"])


def downgrade() -> None:
    op.drop_index(op.f("ix_refresh_token_revoked_at"), table_name="refresh_token")
    op.drop_index(op.f("ix_refresh_token_expires_at"), table_name="refresh_token")
