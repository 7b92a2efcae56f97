"""What a login reads, in one statement (``quick_reads``): the user a login names (by
username, else by one of its addresses), whether the user has TOTP on, and the user's
application password with the given digest, if any."""

from __future__ import annotations

from collections import namedtuple
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlalchemy import Boolean

from postern.storage.database import Database
from postern.storage.quick_reads import read_rows
from postern.storage.schema import users

_USER_COLUMNS = tuple(column.name for column in users.c)
# A user's row, as ``select(users)`` gives it (booleans as booleans on SQLite too).
if TYPE_CHECKING:
    UserRow = Any  # its fields are the table's columns, which the checker cannot follow
else:
    UserRow = namedtuple("UserRow", _USER_COLUMNS)
_BOOLEAN_AT = tuple(i for i, column in enumerate(users.c) if isinstance(column.type, Boolean))
# An application password that matched: its id and scopes (JSON).
AspMatch = namedtuple("AspMatch", ("id", "scopes"))

_SELECT = (
    "SELECT {priority}, {columns}, (SELECT t.totp_enabled FROM user_2fa t WHERE t.user_id = u.id), a.id, a.scopes"
    " FROM users u{join} LEFT JOIN application_passwords a ON a.user_id = u.id AND a.password_digest = :digest"
    " WHERE {where}"
)
_COLUMNS = ", ".join(f'u."{name}"' for name in _USER_COLUMNS)
# By username first; by address when no username matches (the caller keeps the first).
_LOGIN_SQL = (
    _SELECT.format(priority="0", columns=_COLUMNS, join="", where="u.username = :username")
    + " UNION ALL "
    + _SELECT.format(priority="1", columns=_COLUMNS, join=" JOIN addresses x ON x.user_id = u.id", where="x.address_key = :address_key")
)


@dataclass(frozen=True, slots=True)
class LoginState:
    user: UserRow
    asp: AspMatch | None
    totp: bool


async def login_state(db: Database, username: str | None, address_key: str | None, asp_digest: str | None) -> LoginState | None:
    """The user whose username is ``username``, else the owner of the address with
    ``address_key`` (None: not looked for); None when there is no such user."""
    if username is None and address_key is None:
        return None
    params = {"username": username, "address_key": address_key, "digest": asp_digest}
    rows = (await read_rows(db, [(_LOGIN_SQL, params)]))[0]
    if not rows:
        return None
    row = min(rows, key=lambda r: r[0])
    values: list[Any] = list(row[1 : 1 + len(_USER_COLUMNS)])
    for i in _BOOLEAN_AT:
        if values[i] is not None:
            values[i] = bool(values[i])
    rest = row[1 + len(_USER_COLUMNS) :]
    asp = AspMatch(rest[1], rest[2]) if rest[1] is not None else None
    return LoginState(UserRow(*values), asp, bool(rest[0]))
