"""The migrations make exactly the schema of ``storage/schema.py``: Alembic's
autogenerate finds nothing to change in a freshly migrated database. On SQLite, and
on PostgreSQL when POSTERN_TEST_DATABASE_URL names one (in a schema of its own)."""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import Any

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy.ext.asyncio import create_async_engine

from postern.storage.database import Database, current_revision, head_revision, migrate
from postern.storage.schema import metadata
from tests.conftest import TEST_DATABASE_URL


def _default_text(value: Any) -> str | None:
    if value is None:
        return None
    text = str(getattr(value, "text", value)).strip()
    while text.startswith("(") and text.endswith(")"):
        text = text[1:-1].strip()
    return text.strip("'").lower()


def _compare_server_default(
    _context: Any, _inspected_column: Any, _metadata_column: Any, inspected_default: Any, _metadata_default: Any, rendered_metadata_default: Any
) -> bool | None:
    """Alembic's own comparison reports a server default of '' written as a string in
    schema.py as different from the same '' read back from SQLite; compare the SQL
    text, quotes and parentheses aside, and leave anything else to Alembic."""
    if inspected_default is not None and rendered_metadata_default is not None:
        if _default_text(inspected_default) == _default_text(rendered_metadata_default):
            return False
    return None


def _differences(sync_connection: Any) -> list[Any]:
    context = MigrationContext.configure(
        sync_connection, opts={"compare_type": True, "compare_server_default": _compare_server_default}
    )
    return compare_metadata(context, metadata)


async def _check(url: str, schema: str | None) -> None:
    database = Database(url, schema=schema)
    try:
        await migrate(database)
        assert await current_revision(database) == head_revision()
        async with database.engine.connect() as conn:
            differences = await conn.run_sync(_differences)
        assert differences == [], "the migrations and schema.py differ:\n" + "\n".join(map(repr, differences))
    finally:
        await database.close()


async def test_sqlite_matches_the_schema(tmp_path: Path) -> None:
    await _check(f"sqlite+aiosqlite:///{tmp_path / 'migrated.sqlite3'}", None)


async def test_postgresql_matches_the_schema() -> None:
    if not TEST_DATABASE_URL:
        return  # the suite runs on SQLite; CI runs it on PostgreSQL too
    schema = f"t_{secrets.token_hex(6)}"
    try:
        await _check(TEST_DATABASE_URL, schema)
    finally:
        engine = create_async_engine(TEST_DATABASE_URL)
        try:
            async with engine.begin() as conn:
                await conn.exec_driver_sql(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        finally:
            await engine.dispose()
