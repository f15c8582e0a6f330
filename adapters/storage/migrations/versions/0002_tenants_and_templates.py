"""Tenants and templates: agent names are unique per tenant; messages are found by run.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-02

On SQLite, dropping the unique constraint on `name` rebuilds `agents` (batch mode: copy, drop,
rename); the store runs revisions with foreign keys off (`Mode.SCHEMA`), or dropping the old
table would cascade to every block and message.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Add `agents.tenant` and `agents.is_template`; unique (tenant, name); two lookups."""
    with op.batch_alter_table("agents") as batch:
        # Existing agents belong to the default tenant "" and are no templates.
        batch.add_column(sa.Column("tenant", sa.Text(), nullable=False, server_default=""))
        batch.add_column(
            sa.Column("is_template", sa.Boolean(), nullable=False, server_default=sa.false())
        )
        batch.drop_constraint("uq_agents_name", type_="unique")
        batch.create_unique_constraint("uq_agents_tenant_name", ["tenant", "name"])
    op.create_index("ix_agents_name", "agents", ["name"])
    op.create_index("ix_messages_run_id", "messages", ["run_id"])


def downgrade() -> None:
    """Back to unique names (fails if two tenants share a name)."""
    op.drop_index("ix_messages_run_id", table_name="messages")
    op.drop_index("ix_agents_name", table_name="agents")
    with op.batch_alter_table("agents") as batch:
        batch.drop_constraint("uq_agents_tenant_name", type_="unique")
        batch.create_unique_constraint("uq_agents_name", ["name"])
        batch.drop_column("is_template")
        batch.drop_column("tenant")
