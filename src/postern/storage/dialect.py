"""The few statements whose SQL differs between SQLite and PostgreSQL."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Table
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection


def insert_for(conn: AsyncConnection, table: Table) -> Any:
    """An INSERT that supports ``on_conflict_do_update/nothing`` on either database."""
    if conn.dialect.name == "postgresql":
        return postgresql.insert(table)
    return sqlite.insert(table)


def like_pattern(text: str) -> str:
    """A LIKE pattern matching ``text`` anywhere, with its wildcards escaped (use escape='\\')."""
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def prefix_pattern(text: str) -> str:
    """A LIKE pattern matching strings that start with ``text`` (use escape='\\')."""
    return like_pattern(text)[1:]


def greatest(conn: AsyncConnection, *values: Any) -> Any:
    from sqlalchemy import func

    return func.max(*values) if conn.dialect.name == "sqlite" else func.greatest(*values)
