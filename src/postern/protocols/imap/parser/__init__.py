"""Sans-IO IMAP command parser.

Two layers:

* :class:`CommandReader` frames the byte stream into commands.  It is fed
  whatever arrived (``feed(data) -> list[event]``) and answers with events:
  :class:`CommandReceived`, :class:`ContinuationRequired` (send ``+ `` so the
  client sends its synchronising literal), :class:`CommandError` (turn into
  ``TAG BAD ...``), and, in the modes the server switches on,
  :class:`IdleDone` and :class:`LineReceived` (AUTHENTICATE exchanges).
  Line length and literal size are limited before anything is buffered.
* :func:`parse_command` parses one complete command (lines with their
  literals inline, the final CRLF removed) into a typed command from
  :mod:`.commands`, or raises :class:`~.lexer.ImapSyntaxError`.

Like pymap, each command has its own small parse function chosen by name;
like mox, parsing is recursive descent over the complete command with one
position, and a syntax error unwinds to one place that knows the tag.
"""

from ..lexer import ImapSyntaxError
from .arguments import parse_command
from .grammar import MAX_APPEND_MESSAGES, MAX_NESTING, parse_sequence_set
from .reader import (
    CommandError,
    CommandReader,
    CommandReceived,
    ContinuationRequired,
    IdleDone,
    LineReceived,
    ReaderEvent,
)

__all__ = [
    "MAX_APPEND_MESSAGES",
    "MAX_NESTING",
    "CommandError",
    "CommandReader",
    "CommandReceived",
    "ContinuationRequired",
    "IdleDone",
    "ImapSyntaxError",
    "LineReceived",
    "ReaderEvent",
    "parse_command",
    "parse_sequence_set",
]
