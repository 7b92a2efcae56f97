"""Reads of a few indexed rows, in one snapshot, without the async engine's cost where
it can be avoided.

Through SQLAlchemy's async layer, a read transaction of one short statement costs
about half a millisecond of CPU on SQLite (the pool, BEGIN and COMMIT, a dozen
hand-offs to aiosqlite's thread), where the statement itself costs about ten
microseconds. The reads every IMAP, POP3 and SMTP AUTH session makes (a login's
counters and user, a SELECT's folder state) therefore ask ``Database.loop_reader``
in the event loop's own thread, as ``hot_reads`` does (read-only by pragma; WAL
readers never wait for writers), several statements in one ``BEGIN ... COMMIT``.
Elsewhere (PostgreSQL, an in-memory SQLite) they run through the engine, in one
transaction, with each SQL text made into a statement once.

Only for statements that read a few index entries, or one folder's UIDs: the event
loop waits while they run. The SQL is written once for both databases, with
``:name`` parameters (which sqlite3 and SQLAlchemy's ``text`` both take).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import TextClause, text

from postern.storage.database import Database

Statement = tuple[str, Mapping[str, Any]]

# SQL text -> its statement (the engine path); every text is a module constant or one
# of a few shapes (IN lists of a bounded length), so this stays small.
_CLAUSES: dict[str, TextClause] = {}
_MAX_CLAUSES = 512


def text_clause(sql: str) -> TextClause:
    """``text(sql)``, made once per SQL text (the engine path of the fixed statements)."""
    clause = _CLAUSES.get(sql)
    if clause is None:
        if len(_CLAUSES) >= _MAX_CLAUSES:
            _CLAUSES.clear()
        clause = _CLAUSES[sql] = text(sql)
    return clause


def _sqlite_rows(conn: sqlite3.Connection, statements: Sequence[Statement]) -> list[list[Any]]:
    if len(statements) == 1:
        sql, params = statements[0]
        return [conn.execute(sql, params).fetchall()]
    if conn.in_transaction:  # never left open; an old snapshot must not be read from
        conn.rollback()
    conn.execute("BEGIN")
    try:
        return [conn.execute(sql, params).fetchall() for sql, params in statements]
    finally:
        conn.execute("COMMIT")


async def read_rows(db: Database, statements: Sequence[Statement]) -> list[list[Any]]:
    """The rows of each statement (tuples, or tuple-like rows), read in one snapshot."""
    conn = db.loop_reader() if db.is_sqlite else None
    if conn is not None:
        return _sqlite_rows(conn, statements)
    async with db.engine.connect() as engine_conn:
        return [list((await engine_conn.execute(text_clause(sql), dict(params))).all()) for sql, params in statements]


def in_list(name: str, values: Sequence[Any]) -> tuple[str, dict[str, Any]]:
    """``(:name0, :name1, ...)`` and its parameters, for ``IN``."""
    params = {f"{name}{i}": value for i, value in enumerate(values)}
    return "(" + ", ".join(f":{key}" for key in params) + ")", params
