"""projects, sessions and direct payments

Revision ID: 0010_projects
Revises: 0009_sandbox
Create Date: 2026-11-23 20:70:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0010_projects"
down_revision: str | None = "0009_sandbox"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute("SET LOCAL lock_timeout = '5s'")


def downgrade() -> None:
    op.execute("SET LOCAL lock_timeout = '5s'")
