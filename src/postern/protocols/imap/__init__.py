"""IMAP4rev1 (RFC 3501 and extensions).

The modules here do no I/O: :mod:`.parser` turns bytes from a client into typed
commands (:mod:`.commands`), :mod:`.encode` builds response bytes,
:mod:`.search` evaluates SEARCH programs and SORT criteria, :mod:`.thread`
implements THREAD, :mod:`.utf7` the modified UTF-7 of mailbox names.  The
server and the command modules that use them live beside them.
"""
