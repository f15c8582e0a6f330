"""Agent leases: one writer per agent across the processes sharing a database.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-09
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Create `agent_leases` (a row per held lease)."""
    op.create_table(
        "agent_leases",
        sa.Column("agent_id", sa.Text(), nullable=False),
        sa.Column("owner", sa.Text(), nullable=False),
        sa.Column("expires_at", sa.Double(), nullable=False),
        sa.PrimaryKeyConstraint("agent_id", name=op.f("pk_agent_leases")),
    )


def downgrade() -> None:
    """Drop `agent_leases` (leases held now are forgotten)."""
    op.drop_table("agent_leases")
