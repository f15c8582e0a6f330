"""Alembic environment of the storage schema.

`SqlStore.open()` runs it on its own connection (`config.attributes["connection"]`, inside the
store's schema transaction); the `alembic` command line runs it on `-x url=...`.
"""

from __future__ import annotations

import asyncio

from alembic import context
from sqlalchemy import Connection

from loopwright.adapters.storage._db import Database, Mode
from loopwright.adapters.storage.sql import normalize_url
from loopwright.adapters.storage.tables import metadata


def _migrate(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        # SQLite alters tables by copying them; batch mode does that for later revisions.
        render_as_batch=connection.dialect.name == "sqlite",
    )
    with context.begin_transaction():
        context.run_migrations()


def _url() -> str:
    url = context.get_x_argument(as_dictionary=True).get("url")
    if not url:
        raise SystemExit("give the database with `-x url=sqlite:///file.db` (or postgresql://...)")
    return url


async def _online(url: str) -> None:
    parsed, schema = normalize_url(url)
    database = Database(parsed, schema=schema)
    try:
        await database.run(_migrate, Mode.SCHEMA)
    finally:
        await database.dispose()


connection = context.config.attributes.get("connection")
if connection is not None:
    _migrate(connection)
elif context.is_offline_mode():
    context.configure(url=normalize_url(_url())[0], target_metadata=metadata, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()
else:
    asyncio.run(_online(_url()))
