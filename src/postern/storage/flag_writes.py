"""The statements of IMAP STOREs, inside their write transaction: for each, the
messages of a UID set with their flags (``imap.META_COLUMNS``), the caller's plan of
what changes, the folder's next MODSEQ (taken together with the change of its
unseen counter) and the messages' new flags.

On SQLite the STOREs of a batch (``ImapView``'s group commit) run on the driver's
own connection, all in one call in its thread (``WriteBatcher.sqlite_batches``):
through SQLAlchemy and aiosqlite each of their statements cost a dozen hand-offs
between threads and more Python than SQLite spends on it. Elsewhere they go through
SQLAlchemy, as text made once per shape of UID set (building and compiling the
expression of a UID set anew for every STORE cost more than the statement itself).
"""

from __future__ import annotations

import sqlite3
from collections import namedtuple
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from postern.storage import users as user_store
from postern.storage.imap import META_COLUMNS
from postern.storage.messages import UidRanges
from postern.storage.quick_reads import text_clause

#: The plan of one STORE, given the messages' rows (``META_COLUMNS``, by UID): the new
#: flags of those that change (``uid``, the system flags' columns, ``keywords`` as
#: JSON) and the change of the folder's unseen count. It must do no I/O: on SQLite
#: it runs in the driver's thread.
Plan = Callable[[list[Any]], tuple[list[dict[str, Any]], int]]

_FLAG_COLUMNS = ("seen", "flagged", "draft", "deleted", "answered")


@dataclass(frozen=True, slots=True)
class FlagStore:
    user_id: str
    folder_id: str
    uids: UidRanges
    plan: Plan


@dataclass(frozen=True, slots=True)
class Stored:
    """``found``: the folder is the user's (else nothing was read or written);
    ``modseq``: the MODSEQ of the change, None when nothing changed."""

    found: bool
    modseq: int | None = None


def _meta_columns() -> tuple[str, ...]:
    return tuple(column.name for column in META_COLUMNS)


_MAX_SHAPES = 256
_SHAPES: dict[tuple[int, int, int, tuple[str, ...]], str] = {}
_FOLDER_SQL = "SELECT 1 FROM folders WHERE id = :folder AND user_id = :user"
_BUMP_SQL = "UPDATE folders SET modseq = modseq + 1, unseen_count = unseen_count + :unseen WHERE id = :folder RETURNING modseq"
_UPDATE_SQL = (
    "UPDATE messages SET modseq = :modseq, seen = :seen, flagged = :flagged, draft = :draft, deleted = :deleted,"
    " answered = :answered, keywords = :keywords WHERE folder_id = :folder AND uid = :uid"
)


def _meta_sql(uids: UidRanges) -> tuple[str, dict[str, Any]]:
    singles = [start for start, end in uids if end == start]
    ranges = [(start, end) for start, end in uids if end is not None and end != start]
    open_ended = [start for start, end in uids if end is None]
    columns = _meta_columns()
    key = (len(singles), len(ranges), len(open_ended), columns)
    sql = _SHAPES.get(key)
    if sql is None:
        clauses = []
        if singles:
            clauses.append("uid IN (" + ", ".join(f":s{i}" for i in range(len(singles))) + ")")
        clauses.extend(f"uid BETWEEN :a{i} AND :b{i}" for i in range(len(ranges)))
        clauses.extend(f"uid >= :o{i}" for i in range(len(open_ended)))
        where = " OR ".join(clauses) if clauses else "uid IS NULL"
        if len(_SHAPES) >= _MAX_SHAPES:
            _SHAPES.clear()
        sql = _SHAPES[key] = (
            f"SELECT {', '.join(columns)} FROM messages WHERE folder_id = :folder AND user_id = :user AND ({where}) ORDER BY uid"
        )
    params: dict[str, Any] = {f"s{i}": uid for i, uid in enumerate(singles)}
    for i, (start, end) in enumerate(ranges):
        params[f"a{i}"], params[f"b{i}"] = start, end
    params.update({f"o{i}": start for i, start in enumerate(open_ended)})
    return sql, params


def _update_params(folder_id: str, updates: list[dict[str, Any]], modseq: int) -> list[dict[str, Any]]:
    return [
        {"folder": folder_id, "uid": u["uid"], "modseq": modseq, "keywords": u["keywords"], **{c: u[c] for c in _FLAG_COLUMNS}}
        for u in updates
    ]


# -- SQLite, on the driver's connection ---------------------------------------------------


_row_types: dict[tuple[str, ...], Any] = {}


def _row_type(columns: tuple[str, ...]) -> Any:
    row_type = _row_types.get(columns)
    if row_type is None:
        row_type = _row_types[columns] = namedtuple("MetaRow", columns)  # type: ignore[misc]
    return row_type


def store_flags_sqlite(conn: sqlite3.Connection, stores: Sequence[FlagStore]) -> list[Stored]:
    """``store_flags`` on the ``sqlite3`` connection itself (in its thread: see
    ``WriteBatcher.sqlite_batches``)."""
    results: list[Stored] = []
    for store in stores:
        sql, params = _meta_sql(store.uids)
        params["folder"], params["user"] = store.folder_id, store.user_id
        cursor = conn.execute(sql, params)
        row_type = _row_type(tuple(d[0] for d in cursor.description))
        rows = [row_type._make(r) for r in cursor.fetchall()]
        if not rows:
            found = conn.execute(_FOLDER_SQL, {"folder": store.folder_id, "user": store.user_id}).fetchone() is not None
            results.append(Stored(found))
            continue
        updates, unseen_delta = store.plan(rows)
        if not updates:
            results.append(Stored(True))
            continue
        bumped = conn.execute(_BUMP_SQL, {"folder": store.folder_id, "unseen": unseen_delta}).fetchone()
        modseq = int(bumped[0])
        conn.executemany(_UPDATE_SQL, _update_params(store.folder_id, updates, modseq))
        results.append(Stored(True, modseq))
    return results


# -- through SQLAlchemy ---------------------------------------------------------------------


async def store_flags(conn: AsyncConnection, stores: Sequence[FlagStore]) -> list[Stored]:
    """Run the STOREs in order in the caller's write transaction, each seeing the ones
    before it; one outcome each. A STORE whose folder is not its user's reads and
    writes nothing."""
    results: list[Stored] = []
    for store in stores:
        # Users first, as every mailstore write locks (PostgreSQL; nothing on SQLite).
        await user_store.lock_user(conn, store.user_id)
        sql, params = _meta_sql(store.uids)
        params["folder"], params["user"] = store.folder_id, store.user_id
        rows = list(await conn.execute(text_clause(sql), params))
        if not rows:
            found = (await conn.execute(text_clause(_FOLDER_SQL), {"folder": store.folder_id, "user": store.user_id})).first()
            results.append(Stored(found is not None))
            continue
        updates, unseen_delta = store.plan(rows)
        if not updates:
            results.append(Stored(True))
            continue
        modseq = int((await conn.execute(text_clause(_BUMP_SQL), {"folder": store.folder_id, "unseen": unseen_delta})).scalar_one())
        await conn.execute(text_clause(_UPDATE_SQL), _update_params(store.folder_id, updates, modseq))
        results.append(Stored(True, modseq))
    return results
