"""Remembered logins: a repeated login with the same password skips argon2id.

Like Dovecot's auth cache. After a master password has been verified (argon2id, tens
of milliseconds of CPU and 64 MiB of memory at the default cost) and the login has
succeeded, the process remembers a keyed digest of it for ``login_cache_seconds``: an
HMAC-SHA256, under a secret made at random when the process starts and never stored,
of (user id, the stored password hash, the password). The next login of that user
with that password finds the same digest and is not verified again. Nothing in
memory can be turned back into the password, nor tried against offline.

What makes a remembered login stop working at once, in every process:

- the stored password hash is part of the digest and is read with each login, so a
  changed password misses the cache wherever it is asked, even before the change's
  event arrives;
- a disabled account, a second factor turned on (master passwords then no longer open
  the mail doors) and application passwords are read from the database with every
  login as before, cache or not;
- and the events of those changes (``UserLoggedOut`` on a password change or reset,
  ``CredentialsChanged``, ``UserDeleted``, which the event bus carries to the mail
  workers and through Redis to other nodes) drop the user's entries; a gap in the
  events (``EventsLost``) drops every entry.

A wrong password never matches an entry (its digest differs) and is never
remembered: only a successful login is. Application passwords need no cache: they are
checked by a keyed digest lookup already, no argon2id.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections import OrderedDict

from postern.events import (
    CredentialsChanged,
    Event,
    EventsLost,
    UserDeleted,
    UserLoggedOut,
)

#: At most this many remembered logins per process (the oldest go first): a few
#: hundred bytes each.
MAX_ENTRIES = 100_000

_FORGETTING = (UserLoggedOut, CredentialsChanged, UserDeleted)


class LoginCache:
    def __init__(self, seconds: float, max_entries: int = MAX_ENTRIES):
        self.seconds = seconds
        self.max_entries = max_entries
        self._secret = secrets.token_bytes(32)
        # user id -> {digest: expiry (monotonic)}, least recently used first.
        self._users: OrderedDict[str, dict[bytes, float]] = OrderedDict()
        self._count = 0

    @property
    def enabled(self) -> bool:
        return self.seconds > 0

    def __len__(self) -> int:
        return self._count

    def _digest(self, user_id: str, stored_hash: str, password: str) -> bytes:
        message = b"\0".join(
            (
                user_id.encode(),
                stored_hash.encode(),
                password.encode("utf-8", "surrogatepass"),
            )
        )
        return hmac.new(self._secret, message, hashlib.sha256).digest()

    def verified(self, user_id: str, stored_hash: str, password: str) -> bool:
        """Whether this password was verified against this stored hash lately."""
        entries = self._users.get(user_id)
        if not entries:
            return False
        digest = self._digest(user_id, stored_hash, password)
        expiry = next((e for d, e in entries.items() if hmac.compare_digest(d, digest)), None)
        if expiry is None:
            return False
        if expiry <= time.monotonic():
            del entries[digest]
            self._count -= 1
            return False
        self._users.move_to_end(user_id)
        return True

    def remember(self, user_id: str, stored_hash: str, password: str) -> None:
        """Remember a login that has just succeeded with this password."""
        if not self.enabled:
            return
        now = time.monotonic()
        entries = self._users.setdefault(user_id, {})
        self._users.move_to_end(user_id)
        # Expired entries of the user go first: they are a few at most.
        for digest in [d for d, e in entries.items() if e <= now]:
            del entries[digest]
            self._count -= 1
        digest = self._digest(user_id, stored_hash, password)
        if digest not in entries:
            self._count += 1
        entries[digest] = now + self.seconds
        while self._count > self.max_entries and self._users:
            _, oldest = self._users.popitem(last=False)
            self._count -= len(oldest)

    def forget(self, user_id: str) -> None:
        entries = self._users.pop(user_id, None)
        if entries:
            self._count -= len(entries)

    def clear(self) -> None:
        self._users.clear()
        self._count = 0

    def on_events(self, events: list[Event] | None) -> None:
        """The event bus's watcher (``EventBus.watch``); None: events may have been lost."""
        if events is None:
            self.clear()
            return
        for event in events:
            if isinstance(event, _FORGETTING):
                self.forget(event.user_id)
            elif isinstance(event, EventsLost):
                self.clear()
