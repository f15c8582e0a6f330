"""Schema migrations through Alembic; imported only when a database must be created or upgraded.

The revisions live in `migrations/versions/`; `migrations/alembic.ini` explains the command line.
"""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory
from alembic.util.exc import CommandError
from sqlalchemy import Connection

MIGRATIONS = Path(__file__).with_name("migrations")


def alembic_config(connection: Connection | None = None) -> Config:
    """The Alembic configuration of the storage schema (running on `connection` if given)."""
    config = Config(MIGRATIONS / "alembic.ini")
    if connection is not None:
        config.attributes["connection"] = connection
    return config


def head_revision() -> str:
    """The newest revision of the migration scripts."""
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    if head is None:
        raise RuntimeError(f"no Alembic revision under {MIGRATIONS}")
    return head


def upgrade(connection: Connection) -> None:
    """Bring the database on `connection` to the head revision, inside its transaction.

    Raises: CommandError (the database is at a revision these scripts do not know)."""
    command.upgrade(alembic_config(connection), "head")


__all__ = ["MIGRATIONS", "CommandError", "alembic_config", "head_revision", "upgrade"]
