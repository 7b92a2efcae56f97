"""IMAP4rev1 (RFC 3501 and extensions).

The modules here do no I/O: :mod:`.parser` turns bytes from a client into typed
commands (:mod:`.commands`), :mod:`.encode` builds response bytes,
:mod:`.search` evaluates SEARCH programs and SORT criteria, :mod:`.thread`
implements THREAD, :mod:`.utf7` the modified UTF-7 of mailbox names.

Beside them: :mod:`.server` (the listener and the connection loop),
:mod:`.session` (a connection's state, the selected mailbox's sequence-number
map and the updates waiting to be announced), :mod:`.dispatch` (states, errors,
the tagged answer) and one handler module per command (or command family with
its UID form) in :mod:`.commands` (``commands/fetch.py``, ``commands/store.py``,
...), which call the domain services only (``mailstore.imap_view``).
"""
