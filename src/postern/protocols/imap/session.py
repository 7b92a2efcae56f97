"""The state of one IMAP connection: not authenticated, authenticated, selected,
logout; the selected mailbox's view (its sequence-number map, a sorted array of
UIDs) and the updates other sessions and doors caused that wait for a moment the
RFCs allow to announce them (RFC 3501 §7.4.1, §5.2; RFC 7162 §3.2.10).

The session does no socket I/O of its own: it writes response bytes through the
``write`` callable the server gives it, and the server feeds it domain events
(:meth:`Session.on_event`) and asks it to announce what is pending
(:meth:`Session.flush_updates`).
"""

from __future__ import annotations

import asyncio
import logging
from array import array
from bisect import bisect_left, bisect_right
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from postern.events import (
    Event,
    FolderDeleted,
    FolderRenamed,
    MessageAdded,
    MessagesChanged,
    MessagesExpunged,
    Subscription,
    UserDeleted,
    UserLoggedOut,
)
from postern.mailstore.imap_view import SYSTEM_FLAGS

from . import commands as c
from . import encode as enc
from . import esearch

if TYPE_CHECKING:
    from postern.mailstore.imap_view import ImapMessage

    # import cycle: type only; a session holds the services of the listener that made it.
    from .server import ImapServices

log = logging.getLogger("postern.imap")

State = Literal["not_authenticated", "authenticated", "selected", "logout"]


class ConnectionClosed(Exception):
    """The connection is to end now (end of stream, auto-logout, an event's BYE)."""


class ImapError(Exception):
    """Ends a command with ``tag STATUS [CODE] text``."""

    def __init__(self, status: Literal["NO", "BAD"], text: str, code: str | None = None) -> None:
        super().__init__(text)
        self.status = status
        self.text = text
        self.code = code


def no(text: str, code: str | None = None) -> ImapError:
    return ImapError("NO", text, code)


def bad(text: str, code: str | None = None) -> ImapError:
    return ImapError("BAD", text, code)


@dataclass(slots=True)
class Done:
    """How a command ends (``OK`` unless said otherwise)."""

    text: str = "completed"
    code: bytes | None = None
    status: str = "OK"
    send: bool = True  # False: the handler wrote the tagged answer itself (STARTTLS)


@dataclass(slots=True)
class UpdateSearch:
    """A search kept up to date (RFC 5267 §4): its program and the UIDs it matches."""

    tag: str
    uid: bool
    criteria: Any
    uids: set[int]


class SelectedMailbox:
    """The view of the selected mailbox: UIDs by sequence number, and what changed
    that the client has not been told yet."""

    __slots__ = (
        "folder_id",
        "path",
        "uidvalidity",
        "read_only",
        "uids",
        "recent",
        "pending_added",
        "added_uid",
        "pending_expunged",
        "pending_changed",
        "own_modseqs",
        "resync",
        "deleted",
        "saved",
        "uid_next",
        "modseq",
        "keywords",
        "updates",
        "updates_mark",
    )

    def __init__(self, folder_id: str, path: str, uidvalidity: int, read_only: bool, uids: Iterable[int]) -> None:
        self.folder_id = folder_id
        self.path = path
        self.uidvalidity = uidvalidity
        self.read_only = read_only
        self.uids = array("I", uids)
        self.recent: set[int] = set()
        self.pending_added = False
        self.added_uid = 0  # the highest UID a MessageAdded event announced
        self.pending_expunged: set[int] = set()
        self.pending_changed: set[int] = set()
        self.own_modseqs: set[int] = set()
        self.resync = False
        self.deleted = False
        self.saved: frozenset[int] = frozenset()  # SEARCHRES $
        # What the session last read of the folder in storage: UIDNEXT and
        # HIGHESTMODSEQ; after each command it compares them with the folder's now.
        self.uid_next = 0
        self.modseq = 0
        self.keywords: set[str] = set()  # announced in FLAGS (RFC 3501 §7.2.6)
        self.updates: dict[str, UpdateSearch] = {}  # SEARCH RETURN (UPDATE), by tag
        self.updates_mark: tuple[int, int, int] = (0, 0, 0)  # the view they were run on

    @property
    def exists(self) -> int:
        return len(self.uids)

    @property
    def largest_uid(self) -> int:
        return self.uids[-1] if self.uids else 0

    def seq_of(self, uid: int) -> int | None:
        i = bisect_left(self.uids, uid)
        if i < len(self.uids) and self.uids[i] == uid:
            return i + 1
        return None

    def resolve(self, numbers: c.SequenceSet, *, uid: bool) -> list[int]:
        """Indexes (0-based sequence positions) named by a set, ascending.

        A sequence number beyond the mailbox is an error (``BAD``), except through
        ``*``; UIDs that do not exist are left out, as RFC 3501 says.
        """
        uids = self.uids
        count = len(uids)
        spans: list[tuple[int, int]] = []
        if numbers.saved:
            return [i for i, u in enumerate(uids) if u in self.saved]
        if uid:
            largest = uids[-1] if count else 0
            for low, high in numbers.resolved(largest):
                start = bisect_left(uids, low)
                end = bisect_right(uids, high)
                if start < end:
                    spans.append((start, end))
        else:
            for start_n, end_n in numbers.ranges:
                for n in (start_n, end_n):
                    if n is not None and n > count:
                        raise bad("Invalid message sequence number")
            for low, high in numbers.resolved(count):
                if count and low >= 1:
                    spans.append((low - 1, min(high, count)))
        if not spans:
            return []
        spans.sort()
        out: list[int] = []
        last = -1
        for start, end in spans:
            start = max(start, last + 1)
            if start < end:
                out.extend(range(start, end))
                last = end - 1
        return out

    def uid_ranges(self, indexes: Sequence[int]) -> list[tuple[int, int | None]]:
        """UID ranges covering these positions (runs of consecutive positions)."""
        ranges: list[tuple[int, int | None]] = []
        if not indexes:
            return ranges
        run_start = prev = indexes[0]
        for i in indexes[1:]:
            if i != prev + 1:
                ranges.append((self.uids[run_start], self.uids[prev]))
                run_start = i
            prev = i
        ranges.append((self.uids[run_start], self.uids[prev]))
        return ranges

    def remove(self, uid: int) -> int | None:
        """Remove a UID from the map; its sequence number before, or None."""
        i = bisect_left(self.uids, uid)
        if i < len(self.uids) and self.uids[i] == uid:
            del self.uids[i]
            self.recent.discard(uid)
            return i + 1
        return None


@dataclass(slots=True)
class Session:
    """One connection's IMAP state."""

    services: ImapServices
    write: Callable[[bytes], None]
    peer: str = ""
    tls: bool = False
    loopback: bool = False
    state: State = "not_authenticated"
    user_id: str | None = None
    username: str | None = None
    subscription: Subscription | None = None
    selected: SelectedMailbox | None = None
    enabled: set[str] = field(default_factory=set)
    condstore: bool = False  # a CONDSTORE-enabling command was seen (RFC 7162 §3.1)
    closing: str | None = None  # a BYE text: the connection is to end
    connection: Any = None  # the server's connection object (IDLE, AUTHENTICATE, STARTTLS)

    # -- capabilities ---------------------------------------------------------

    @property
    def login_allowed(self) -> bool:
        return self.tls or self.loopback

    @property
    def qresync(self) -> bool:
        return "QRESYNC" in self.enabled

    def capabilities(self) -> list[str]:
        caps = ["IMAP4rev1", "SASL-IR", "LITERAL+", "ID", "ENABLE", "IDLE"]
        if self.state == "not_authenticated":
            if not self.tls and self.services.tls_context is not None:
                caps.append("STARTTLS")
            if self.login_allowed:
                caps.append("AUTH=PLAIN")
            else:
                caps.append("LOGINDISABLED")
            return caps
        caps += [
            "NAMESPACE",
            "UNSELECT",
            "UIDPLUS",
            "MOVE",
            "CHILDREN",
            "SPECIAL-USE",
            "CREATE-SPECIAL-USE",
            "LIST-EXTENDED",
            "LIST-STATUS",
            "CONDSTORE",
            "QRESYNC",
            "ESEARCH",
            "SEARCHRES",
            "SORT",
            "SORT=DISPLAY",
            "ESORT",
            "CONTEXT=SEARCH",
            "CONTEXT=SORT",
            "PARTIAL",
            "THREAD=REFERENCES",
            "THREAD=ORDEREDSUBJECT",
            "QUOTA",
            "QUOTA=RES-STORAGE",
            "MULTIAPPEND",
            "CATENATE",
            "BINARY",
            f"APPENDLIMIT={self.services.max_message_size}",
        ]
        return caps

    # -- output ---------------------------------------------------------------

    def untagged(self, text: str | bytes) -> None:
        data = text.encode("utf-8") if isinstance(text, str) else text
        self.write(b"* " + data + b"\r\n")

    def encode_mailbox(self, name: str) -> bytes:
        return enc.mailbox(name)

    # -- events ---------------------------------------------------------------

    def subscribe(self) -> None:
        if self.subscription is None and self.user_id is not None:
            self.subscription = self.services.bus.subscribe(self.user_id)

    def close(self) -> None:
        if self.subscription is not None:
            self.subscription.close()
            self.subscription = None
        self.selected = None

    def absorb_events(self) -> None:
        """Take every queued event into the pending updates."""
        sub = self.subscription
        if sub is None:
            return
        if sub.overflowed:
            sub.overflowed = False
            if self.selected is not None:
                self.selected.resync = True
        queue = sub.queue
        while True:
            try:
                event = queue.get_nowait()
            except asyncio.QueueEmpty:
                break
            self.on_event(event)

    def on_event(self, event: Event) -> None:
        if isinstance(event, UserLoggedOut):
            self.closing = event.reason or "Logged out by the administrator"
            return
        if isinstance(event, UserDeleted):
            self.closing = "Account deleted"
            return
        selected = self.selected
        if selected is None:
            return
        folder_id = getattr(event, "folder_id", None)
        if folder_id != selected.folder_id:
            return
        if isinstance(event, MessageAdded):
            selected.pending_added = True
            if event.uid > selected.added_uid:
                selected.added_uid = event.uid
        elif isinstance(event, MessagesChanged):
            if event.modseq not in selected.own_modseqs:
                selected.pending_changed.update(event.uids)
        elif isinstance(event, MessagesExpunged):
            selected.pending_expunged.update(event.uids)
        elif isinstance(event, FolderDeleted):
            selected.deleted = True
        elif isinstance(event, FolderRenamed):
            selected.path = event.path

    # -- announcing updates ----------------------------------------------------

    def fetch_flags_line(self, seq: int, message: ImapMessage, *, with_uid: bool = True) -> bytes:
        items = []
        if with_uid:
            items.append(b"UID " + str(message.uid).encode())
        items.append(b"FLAGS " + enc.flag_list(self.flags_of(message)))
        if self.condstore:
            items.append(b"MODSEQ (" + str(message.modseq).encode() + b")")
        return b"* " + str(seq).encode() + b" FETCH (" + b" ".join(items) + b")\r\n"

    def flags_of(self, message: ImapMessage) -> tuple[str, ...]:
        selected = self.selected
        if selected is None:
            return message.flags
        for flag in message.flags:
            if flag[0] != "\\" and flag not in selected.keywords:
                self.announce_keywords(message.flags)
                break
        if message.uid in selected.recent:
            return (*message.flags, "\\Recent")
        return message.flags

    def announce_keywords(self, flags: Iterable[str]) -> None:
        """An untagged FLAGS (and PERMANENTFLAGS) before a keyword the client has not
        been told of is used in a FETCH (RFC 3501 §7.2.6)."""
        selected = self.selected
        if selected is None:
            return
        new = [f for f in flags if f[0] != "\\" and f not in selected.keywords]
        if not new:
            return
        selected.keywords.update(new)
        keywords = sorted(selected.keywords)
        self.untagged(b"FLAGS " + enc.flag_list((*SYSTEM_FLAGS, *keywords)))
        if not selected.read_only:
            permanent = enc.flag_list((*SYSTEM_FLAGS, *keywords, "\\*"))
            self.untagged(b"OK [PERMANENTFLAGS " + permanent + b"] Flags permitted")

    def announce_expunged(self, uids: Iterable[int]) -> None:
        """Remove UIDs from the map and say so: EXPUNGE, or VANISHED with QRESYNC."""
        selected = self.selected
        if selected is None:
            return
        gone: list[int] = []
        expunged = set(uids)
        for update in selected.updates.values():
            lost = update.uids & expunged
            if lost:  # before the EXPUNGEs, while the sequence numbers are valid
                update.uids -= lost
                ids = sorted(lost) if update.uid else sorted(s for s in map(selected.seq_of, lost) if s is not None)
                self.untagged(esearch.update_line(update.tag, update.uid, "REMOVEFROM", ids))
        for uid in sorted(expunged):
            seq = selected.remove(uid)
            if seq is None:
                continue
            selected.pending_changed.discard(uid)
            if self.qresync:
                gone.append(uid)
            else:
                self.write(b"* " + str(seq).encode() + b" EXPUNGE\r\n")
        if gone:
            self.write(b"* VANISHED " + enc.sequence_set(gone) + b"\r\n")

    async def flush_updates(self, *, allow_expunge: bool) -> None:
        """Announce what other sessions and doors changed in the selected mailbox."""
        self.absorb_events()
        selected = self.selected
        if selected is None or self.closing:
            return
        view = self.services.view
        if selected.deleted:
            self.closing = "Selected mailbox was deleted"
            return
        await self.sync_from_storage(selected)
        if selected.deleted:
            self.closing = "Selected mailbox was deleted"
            return
        if selected.resync:
            selected.resync = False
            current = set(await view.uids_after(selected.folder_id, 0))
            selected.pending_expunged.update(u for u in selected.uids if u not in current)
            selected.pending_changed.update(u for u in selected.uids if u in current)
            if current and max(current) > selected.largest_uid:
                selected.pending_added = True
                selected.added_uid = max(selected.added_uid, max(current))
        if allow_expunge and selected.pending_expunged:
            expunged = selected.pending_expunged
            selected.pending_expunged = set()
            self.announce_expunged(expunged)
        if selected.pending_added:
            selected.pending_added = False
            new = await self.services.uids_after(selected.folder_id, selected.largest_uid, selected.added_uid)
            if new:
                selected.uids.extend(new)
                if not selected.read_only:
                    selected.recent.update(await view.claim_recent(selected.folder_id, new))
                self.write(b"* " + str(selected.exists).encode() + b" EXISTS\r\n")
                self.write(b"* " + str(len(selected.recent)).encode() + b" RECENT\r\n")
        if selected.pending_changed:
            changed = [u for u in selected.pending_changed if u not in selected.pending_expunged]
            selected.pending_changed = set()
            if changed:
                for message in await view.messages_by_uid(selected.folder_id, changed):
                    seq = selected.seq_of(message.uid)
                    if seq is not None:
                        self.write(self.fetch_flags_line(seq, message))
        selected.own_modseqs.clear()

    async def sync_from_storage(self, selected: SelectedMailbox) -> None:
        """Compare the view with the folder as committed now (UIDNEXT, HIGHESTMODSEQ),
        and take what changed into the pending updates.

        Events wake IDLE at once, but an event published by another process (or
        one still queued) may arrive after the command that follows the change; this
        read makes a change that completed before a command began visible at that
        command's end, every time, whatever the events do."""
        state = await self.services.view.folder_state(selected.folder_id)
        if state is None:
            selected.deleted = True
            return
        uid_next, modseq = state
        if uid_next > selected.uid_next:
            if uid_next - 1 > selected.largest_uid:
                selected.pending_added = True
                selected.added_uid = max(selected.added_uid, uid_next - 1)
            selected.uid_next = uid_next
        if modseq > selected.modseq:
            since = selected.modseq
            selected.modseq = modseq
            if since:
                view = self.services.view
                largest = selected.largest_uid
                own = selected.own_modseqs
                for message in await view.changed_since(selected.folder_id, since):
                    if message.uid <= largest and message.modseq not in own and selected.seq_of(message.uid) is not None:
                        selected.pending_changed.add(message.uid)
                gone = [u for u in await view.vanished_since(selected.folder_id, since) if selected.seq_of(u) is not None]
                selected.pending_expunged.update(gone)

    async def enable_condstore(self) -> None:
        """A CONDSTORE-enabling command (RFC 7162 §3.1): the first one while a mailbox
        is selected is answered with its HIGHESTMODSEQ."""
        if self.condstore:
            return
        self.condstore = True
        selected = self.selected
        if selected is not None:
            state = await self.services.view.folder_state(selected.folder_id)
            highest = state[1] if state is not None else selected.modseq
            self.untagged(f"OK [HIGHESTMODSEQ {highest}] Highest")

    # -- helpers for the commands ------------------------------------------------

    def require_selected(self) -> SelectedMailbox:
        if self.selected is None:
            raise bad("No mailbox selected")
        return self.selected

    def require_user(self) -> str:
        if self.user_id is None:
            raise bad("Not authenticated")
        return self.user_id
