"""The SQL schema (SQLAlchemy Core tables) and how a database gets to it.

Migrations are Alembic revisions under `migrations/versions/`. `ensure_schema` reads the stored
revision (two cheap queries) and returns when it is `HEAD_REVISION`, so opening a store that is
up to date never imports Alembic; otherwise it runs the upgrade in the same transaction, under a
lock (an advisory lock on PostgreSQL, the write lock on SQLite), so several workers opening one
database at once are safe. To change the schema: edit the tables below, generate a revision
(see `migrations/alembic.ini`), review it, and set `HEAD_REVISION` to it (a test checks).

JSON columns hold text written by orjson (portable across SQLite and PostgreSQL, and no second
serialiser on the hot path); ids are text; times are doubles (clock seconds).
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Double,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    Table,
    Text,
    UniqueConstraint,
    false,
    inspect,
    text,
)
from sqlalchemy.engine import Connection

from loopwright.engine.errors import LoopwrightError

HEAD_REVISION = "0003"
"""The Alembic revision this code reads and writes."""

# SQLite only autoincrements an `INTEGER PRIMARY KEY` (the rowid alias), not a BIGINT one.
_Pos = BigInteger().with_variant(Integer(), "sqlite")

# Named constraints: later revisions (and SQLite's batch mode) must be able to refer to them.
metadata = MetaData(
    naming_convention={
        "ix": "ix_%(column_0_label)s",
        "uq": "uq_%(table_name)s_%(column_0_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

agents = Table(
    "agents",
    metadata,
    Column("id", Text, primary_key=True),
    Column("name", Text, nullable=False),
    # Server defaults: the rows of a database made before tenants (revision 0001) get them.
    Column("tenant", Text, nullable=False, server_default=""),
    Column("is_template", Boolean, nullable=False, server_default=false()),
    Column("model", Text, nullable=False),
    Column("system", Text, nullable=False),
    Column("workflow", Text, nullable=False),
    Column("tools", Text, nullable=False),  # JSON list of tool module names
    Column("params", Text, nullable=False),  # JSON object of param overrides
    Column("version", BigInteger, nullable=False),
    Column("in_context", Text, nullable=False),  # JSON list of message ids, in order
    # Kept here so that load_context reports the log size without counting the log.
    Column("message_count", BigInteger, nullable=False),
    Column("last_edit_at", Double, nullable=False),
    Column("created_at", Double, nullable=False),
    UniqueConstraint("tenant", "name", name="uq_agents_tenant_name"),
    # A lookup by name without a tenant (the CLI, a turn that names its agent) stays indexed.
    Index("ix_agents_name", "name"),
)

blocks = Table(
    "blocks",
    metadata,
    Column("agent_id", Text, ForeignKey("agents.id", ondelete="CASCADE"), primary_key=True),
    Column("label", Text, primary_key=True),
    Column("value", Text, nullable=False),
    Column("limit", BigInteger, nullable=False),
    Column("read_only", Boolean, nullable=False),
    Column("description", Text, nullable=False),
)

messages = Table(
    "messages",
    metadata,
    Column("pos", _Pos, primary_key=True, autoincrement=True),  # insertion order
    Column("id", Text, nullable=False, unique=True),
    Column("agent_id", Text, ForeignKey("agents.id", ondelete="CASCADE"), nullable=False),
    Column("run_id", Text),
    Column("step", BigInteger, nullable=False),
    Column("role", Text, nullable=False),
    Column("content", Text),
    Column("tool_calls", Text),  # JSON list of tool calls; NULL when there are none
    Column("tool_call_id", Text),
    Column("name", Text),
    Column("incomplete", Boolean, nullable=False),
    Column("created_at", Double, nullable=False),
    Index("ix_messages_agent_pos", "agent_id", "pos"),
    Index("ix_messages_run_id", "run_id"),  # find_messages(run_id=...): a turn's messages
)

runs = Table(
    "runs",
    metadata,
    Column("pos", _Pos, primary_key=True, autoincrement=True),  # insertion order
    Column("id", Text, nullable=False, unique=True),
    Column("workflow", Text, nullable=False),
    Column("key", Text),
    Column("status", Text, nullable=False),
    Column("state", Text, nullable=False),
    Column("seq", BigInteger, nullable=False),
    Column("epoch", BigInteger, nullable=False),
    Column("record", Text, nullable=False),  # JSON of the RunRecord
    Column("created_at", Double, nullable=False),
    Column("updated_at", Double, nullable=False),
    Index("ix_runs_status", "status"),
    Index("ix_runs_key", "key"),
)

# One row per held lease (see `_sql_leases.py`). No foreign key to `agents`: an agent is
# deleted under its own lease, and the row goes when the lease is released.
agent_leases = Table(
    "agent_leases",
    metadata,
    Column("agent_id", Text, primary_key=True),
    Column("owner", Text, nullable=False),
    Column("expires_at", Double, nullable=False),  # store clock seconds
)

_PG_LOCK_KEY = 0x6C6F6F70  # "loop": serialises schema changes across worker processes


class SchemaVersionError(LoopwrightError, RuntimeError):
    """The database schema is at a revision this code does not know (a newer loopwright's)."""

    def __init__(self, stored: str, supported: str) -> None:
        super().__init__(
            f"the database schema is at revision {stored!r}, this loopwright knows revisions up "
            f"to {supported!r}; upgrade loopwright (or point it at another database)"
        )
        self.stored = stored
        self.supported = supported


def stored_revision(conn: Connection) -> str | None:
    """The Alembic revision the database is at, or None when it has no schema yet."""
    if not inspect(conn).has_table("alembic_version"):
        return None
    revision = conn.scalar(text("SELECT version_num FROM alembic_version"))
    return None if revision is None else str(revision)


def ensure_schema(conn: Connection, *, pg_schema: str | None = None) -> None:
    """Create the schema if it is missing, or upgrade it; run it as a `Mode.SCHEMA` body.

    `pg_schema` names the PostgreSQL schema (namespace) to create first if it is missing.
    Raises: SchemaVersionError."""
    if conn.dialect.name == "postgresql":
        conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_LOCK_KEY})
        if pg_schema is not None:
            quoted = conn.dialect.identifier_preparer.quote_identifier(pg_schema)
            conn.exec_driver_sql(f"CREATE SCHEMA IF NOT EXISTS {quoted}")
    stored = stored_revision(conn)
    if stored == HEAD_REVISION:
        return
    from . import _migrate  # Alembic costs ~100 ms to import: only when there is work

    try:
        _migrate.upgrade(conn)
    except _migrate.CommandError as err:
        raise SchemaVersionError(str(stored), HEAD_REVISION) from err
