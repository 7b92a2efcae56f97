"""The hottest reads — a page of a folder for the admin API, and the recipient of
every RCPT on the mail doors — in one statement each.

SQLAlchemy's async layer costs about a dozen hand-offs to aiosqlite's worker thread
per query; for an index seek of at most 251 rows that is most of the time spent.
On SQLite this module asks the database's connection for the event loop's thread
instead (``Database.loop_reader``: read-only by pragma; WAL readers never wait for
writers), with the SQL text built once. On PostgreSQL the same statement goes
through the engine in one round trip.
"""

from __future__ import annotations

import sqlite3
from collections import namedtuple
from typing import Any

from sqlalchemy import text

from postern.storage.database import Database
from postern.storage.messages import LIST_FIELDS
from postern.storage.quick_reads import read_rows

FolderHead = namedtuple("FolderHead", ("message_count", "special_use"))
# What RCPT needs to know of the user an address belongs to.
AddressOwner = namedtuple("AddressOwner", ("id", "disabled", "storage_used", "quota_allowed"))

_OWNER_SQL = (
    "SELECT u.id, u.disabled, u.storage_used, u.quota_allowed FROM addresses a JOIN users u ON u.id = a.user_id WHERE a.address_key = :key"
)

# What RCPT needs to know of an alias, a reverse alias, a catch-all custom domain and
# the forward activity a VERP bounce address names (see delivery/router.py).
AliasTarget = namedtuple("AliasTarget", ("id", "user_id", "enabled", "user_disabled"))
ReverseAliasTarget = namedtuple("ReverseAliasTarget", ("contact_id", "alias_id", "user_id", "user_disabled"))
CatchAllTarget = namedtuple("CatchAllTarget", ("domain_id", "user_id", "user_disabled", "deleted"))
ActivityTarget = namedtuple("ActivityTarget", ("alias_id", "user_id", "action"))

_ALIAS_SQL = "SELECT a.id, a.user_id, a.enabled, u.disabled FROM aliases a JOIN users u ON u.id = a.user_id WHERE a.email_key = :key"
_REVERSE_ALIAS_SQL = (
    "SELECT c.id, c.alias_id, c.user_id, u.disabled FROM contacts c JOIN users u ON u.id = c.user_id WHERE c.reverse_alias_key = :key"
)
_CATCH_ALL_SQL = (
    "SELECT d.id, d.user_id, u.disabled, (SELECT COUNT(*) FROM deleted_aliases x WHERE x.email_key = :key)"
    " FROM custom_domains d JOIN users u ON u.id = d.user_id WHERE d.domain = :domain AND d.verified AND d.catch_all"
)
_ACTIVITY_SQL = "SELECT alias_id, user_id, action FROM alias_activities WHERE id = :id"


_HEAD_SQL = "SELECT message_count, special_use FROM folders WHERE id = ? AND user_id = ?"


def _rows_sql(ascending: bool, after: bool) -> str:
    seek = (" AND uid > ?" if ascending else " AND uid < ?") if after else ""
    return f"SELECT {', '.join(LIST_FIELDS)} FROM messages WHERE folder_id = ?{seek} ORDER BY uid {'ASC' if ascending else 'DESC'} LIMIT ?"


def _page_sql(ascending: bool, after: bool, true: str) -> str:
    columns = ", ".join(f"m.{name}" for name in LIST_FIELDS)
    inner = ", ".join(LIST_FIELDS)
    order = "ASC" if ascending else "DESC"
    seek = (" AND uid > :after" if ascending else " AND uid < :after") if after else ""
    # The folder row and the page in one statement (one round trip to PostgreSQL):
    # no page when the folder is not the user's.
    return (
        f"SELECT f.message_count, f.special_use, {columns} FROM folders f LEFT JOIN ("
        f"SELECT {inner} FROM messages WHERE folder_id = :folder{seek} ORDER BY uid {order} LIMIT :limit"
        f") m ON {true} WHERE f.id = :folder AND f.user_id = :user ORDER BY m.uid {order}"
    )


class HotReads:
    def __init__(self, db: Database):
        self.db = db
        true = "1" if db.is_sqlite else "TRUE"
        self._sql = {(a, c): _page_sql(a, c, true) for a in (True, False) for c in (True, False)}
        self._statements = {key: text(sql) for key, sql in self._sql.items()}
        # On SQLite two plain statements beat the join, which it materialises and sorts.
        self._rows_sql = {(a, c): _rows_sql(a, c) for a in (True, False) for c in (True, False)}

    def _connection(self) -> sqlite3.Connection:
        conn = self.db.loop_reader()
        if conn is None:  # an in-memory database: a connection of its own sees nothing
            raise RuntimeError("no event-loop reader for this database")
        return conn

    async def _first(self, sql: str, **params: Any) -> Any:
        """The first row of one of the RCPT lookups above (in the event loop's thread on SQLite)."""
        rows = (await read_rows(self.db, [(sql, params)]))[0]
        return rows[0] if rows else None

    async def address_owner(self, address_key: str) -> AddressOwner | None:
        """The user that owns the address with this normalised key, if any."""
        row = await self._first(_OWNER_SQL, key=address_key)
        return None if row is None else AddressOwner(row[0], bool(row[1]), row[2], row[3])

    async def alias_target(self, email_key: str) -> AliasTarget | None:
        row = await self._first(_ALIAS_SQL, key=email_key)
        return None if row is None else AliasTarget(row[0], row[1], bool(row[2]), bool(row[3]))

    async def reverse_alias_target(self, reverse_alias_key: str) -> ReverseAliasTarget | None:
        row = await self._first(_REVERSE_ALIAS_SQL, key=reverse_alias_key)
        return None if row is None else ReverseAliasTarget(row[0], row[1], row[2], bool(row[3]))

    async def catch_all_target(self, ascii_domain: str, email_key: str) -> CatchAllTarget | None:
        """The verified custom domain with catch-all on, and whether ``email_key`` is a
        deleted alias (which is never created again)."""
        row = await self._first(_CATCH_ALL_SQL, key=email_key, domain=ascii_domain)
        return None if row is None else CatchAllTarget(row[0], row[1], bool(row[2]), bool(row[3]))

    async def activity_target(self, activity_id: int) -> ActivityTarget | None:
        row = await self._first(_ACTIVITY_SQL, id=activity_id)
        return None if row is None else ActivityTarget(row[0], row[1], row[2])

    async def folder_page(
        self, user_id: str, folder_id: str, *, ascending: bool, after_uid: int | None, limit: int
    ) -> tuple[FolderHead | None, list[Any]]:
        """The folder's head and up to ``limit`` rows (tuples of LIST_FIELDS; SQLite gives
        its booleans as 0 and 1) after ``after_uid`` in the given order; (None, []) when
        the user has no such folder."""
        key = (ascending, after_uid is not None)
        if self.db.is_sqlite:
            return self._sqlite_page(key, user_id, folder_id, after_uid, limit)
        params: dict[str, Any] = {"folder": folder_id, "user": user_id, "limit": limit}
        if after_uid is not None:
            params["after"] = after_uid
        async with self.db.engine.connect() as conn:
            rows = (await conn.execute(self._statements[key], params)).all()
        if not rows:
            return None, []
        # A row whose page side is empty (the LEFT JOIN of an empty folder) is no message.
        return FolderHead(rows[0][0], rows[0][1]), [r[2:] for r in rows if r[2] is not None]

    def _sqlite_page(
        self, key: tuple[bool, bool], user_id: str, folder_id: str, after_uid: int | None, limit: int
    ) -> tuple[FolderHead | None, list[Any]]:
        conn = self._connection()
        conn.execute("BEGIN")  # one snapshot for the folder's count and its page
        try:
            head = conn.execute(_HEAD_SQL, (folder_id, user_id)).fetchone()
            if head is None:
                return None, []
            args = (folder_id, after_uid, limit) if after_uid is not None else (folder_id, limit)
            rows = conn.execute(self._rows_sql[key], args).fetchall()
        finally:
            conn.execute("COMMIT")
        return FolderHead(head[0], head[1]), rows

    def close(self) -> None:
        """Nothing of its own to close: the database closes its event-loop reader."""
