"""The IMAP command parser: framing (CommandReader) and grammar (parse_command)."""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone

import pytest

from postern.mime.imap_structure import SectionSpec
from postern.protocols.imap import commands as c
from postern.protocols.imap.parser import (
    CommandError,
    CommandReader,
    CommandReceived,
    ContinuationRequired,
    IdleDone,
    ImapSyntaxError,
    LineReceived,
    parse_command,
    parse_sequence_set,
)


def parse(line: bytes, **kwargs: bool) -> c.Command:
    return parse_command(line, **kwargs)


def bad(line: bytes) -> ImapSyntaxError:
    with pytest.raises(ImapSyntaxError) as info:
        parse_command(line)
    return info.value


def one(reader: CommandReader, data: bytes) -> object:
    events = reader.feed(data)
    assert len(events) == 1, events
    return events[0]


# ---------------------------------------------------------------------------
# framing
# ---------------------------------------------------------------------------


def test_commands_split_across_feeds_and_pipelined() -> None:
    reader = CommandReader()
    assert reader.feed(b"a1 NO") == []
    assert reader.feed(b"OP\r") == []
    events = reader.feed(b"\na2 CAPABILITY\r\na3 LOGOUT\r\n")
    assert [type(e.command) for e in events if isinstance(e, CommandReceived)] == [c.Noop, c.Capability, c.Logout]


def test_bare_lf_line_endings_are_accepted() -> None:
    assert isinstance(one(CommandReader(), b"a NOOP\n"), CommandReceived)


def test_empty_lines_are_ignored() -> None:
    assert CommandReader().feed(b"\r\n\r\n") == []


def test_synchronising_literal_asks_for_continuation() -> None:
    reader = CommandReader()
    event = one(reader, b"a1 LOGIN {3}\r\n")
    assert event == ContinuationRequired("a1", "LOGIN", 3)
    assert reader.feed(b"bo") == []
    event = one(reader, b"b {4}\r\n")
    assert event == ContinuationRequired("a1", "LOGIN", 4)
    event = one(reader, b"pass\r\n")
    assert isinstance(event, CommandReceived)
    assert event.command == c.Login("a1", b"bob", b"pass")


def test_literal_may_contain_crlf_and_literal_markers() -> None:
    reader = CommandReader()
    events = reader.feed(b"a APPEND INBOX {12+}\r\nx {3}\r\ny\r\n\r\n\r\n")
    assert len(events) == 1
    command = events[0].command
    assert isinstance(command, c.Append)
    assert command.messages[0].message == b"x {3}\r\ny\r\n\r\n"


def test_non_synchronising_literal_needs_no_continuation() -> None:
    events = CommandReader().feed(b"a LOGIN {3+}\r\nbob {4+}\r\npass\r\n")
    assert len(events) == 1 and isinstance(events[0], CommandReceived)


def test_literal_plus_can_be_refused() -> None:
    reader = CommandReader(literal_plus=False)
    event = one(reader, b"a LOGIN {3+}\r\nbob x\r\n")
    assert isinstance(event, CommandError) and event.fatal
    assert reader.closed and reader.feed(b"b NOOP\r\n") == []


def test_literal_marker_inside_quoted_string_is_not_a_literal() -> None:
    event = one(CommandReader(), b'a LOGIN "x {3}\r\n')
    assert isinstance(event, CommandError) and event.tag == "a"


def test_escaped_quote_before_literal_marker() -> None:
    event = one(CommandReader(), b'a LOGIN "x\\"" {3}\r\n')
    assert isinstance(event, ContinuationRequired)


def test_oversized_synchronising_literal_is_refused_before_reading() -> None:
    reader = CommandReader(max_literal_size=100)
    event = one(reader, b"a7 APPEND INBOX {101}\r\n")
    assert isinstance(event, CommandError)
    assert (event.tag, event.code, event.fatal) == ("a7", "TOOBIG", False)
    assert event.response() == b"a7 BAD [TOOBIG] literal too big\r\n"
    # The client did not send the literal; the next command is read normally.
    assert isinstance(one(reader, b"a8 NOOP\r\n"), CommandReceived)


def test_oversized_non_synchronising_literal_is_fatal() -> None:
    reader = CommandReader(max_literal_size=100)
    event = one(reader, b"a APPEND INBOX {101+}\r\n" + b"x" * 101)
    assert isinstance(event, CommandError) and event.fatal and event.code == "TOOBIG"
    assert reader.closed


def test_too_long_line_is_reported_and_skipped() -> None:
    reader = CommandReader(max_line_length=50)
    events = reader.feed(b"a1 SEARCH " + b"X" * 100)
    assert len(events) == 1 and events[0].code == "TOOBIG" and events[0].tag == "a1"
    assert reader.feed(b"Y" * 1000) == []  # still skipping, nothing buffered
    assert reader.buffered == 0
    events = reader.feed(b"ZZ\r\na2 NOOP\r\n")
    assert [type(e) for e in events] == [CommandReceived]


def test_too_long_complete_line_names_its_tag() -> None:
    events = CommandReader(max_line_length=20).feed(b"a17 " + b"x" * 40 + b"\r\na18 NOOP\r\n")
    assert events[0] == CommandError("a17", "command line too long", "TOOBIG")
    assert isinstance(events[1], CommandReceived) and events[1].command.tag == "a18"


def test_line_limit_counts_all_lines_of_a_command() -> None:
    reader = CommandReader(max_line_length=40)
    assert isinstance(one(reader, b"a LOGIN {1}\r\n"), ContinuationRequired)
    events = reader.feed(b"x " + b"y" * 40 + b"\r\n")
    assert events and events[0].code == "TOOBIG"


def test_reject_literal_forgets_the_command() -> None:
    reader = CommandReader()
    assert isinstance(one(reader, b"a APPEND INBOX {10}\r\n"), ContinuationRequired)
    reader.reject_literal()
    assert isinstance(one(reader, b"b NOOP\r\n"), CommandReceived)


def test_parse_error_without_tag_is_untagged() -> None:
    event = one(CommandReader(), b"+++\r\n")
    assert isinstance(event, CommandError) and event.tag is None
    assert event.response().startswith(b"* BAD ")


def test_unknown_command_is_tagged_bad() -> None:
    event = one(CommandReader(), b"t1 FROBNICATE\r\n")
    assert isinstance(event, CommandError)
    assert event.response() == b"t1 BAD unknown command FROBNICATE\r\n"


def test_idle_pauses_until_the_server_accepts_it() -> None:
    reader = CommandReader()
    events = reader.feed(b"a IDLE\r\nDONE\r\nb NOOP\r\n")
    assert [type(e) for e in events] == [CommandReceived]
    assert reader.paused
    events = reader.expect_idle_done()
    assert isinstance(events[0], IdleDone)
    assert isinstance(events[1], CommandReceived) and events[1].command == c.Noop("b")


def test_idle_done_is_case_insensitive_and_anything_else_is_an_error() -> None:
    reader = CommandReader()
    reader.feed(b"a IDLE\r\n")
    assert reader.expect_idle_done() == []
    assert reader.feed(b"done\r\n") == [IdleDone()]
    reader.feed(b"b IDLE\r\n")
    reader.expect_idle_done()
    event = one(reader, b"c NOOP\r\n")
    assert isinstance(event, CommandError)


def test_refused_idle_resumes_command_reading() -> None:
    reader = CommandReader()
    reader.feed(b"a IDLE\r\nb NOOP\r\n")
    events = reader.resume()
    assert isinstance(events[0], CommandReceived) and events[0].command == c.Noop("b")


def test_authenticate_exchange_lines() -> None:
    reader = CommandReader()
    event = one(reader, b"a AUTHENTICATE PLAIN\r\nAGJvYgBwdw==\r\n")
    assert event.command == c.Authenticate("a", "PLAIN", None)
    assert reader.expect_line() == [LineReceived(b"AGJvYgBwdw==")]
    assert reader.paused
    assert reader.resume() == []


def test_starttls_discards_pipelined_plaintext() -> None:
    reader = CommandReader()
    event = one(reader, b"a STARTTLS\r\nb LOGIN evil injected\r\n")
    assert isinstance(event, CommandReceived)
    assert reader.discard_buffered() > 0
    assert reader.resume() == []


def test_utf8_mode_reads_mailbox_names_as_utf8() -> None:
    reader = CommandReader()
    reader.utf8 = True
    event = one(reader, "a SELECT \"Entw&ürfe\"\r\n".encode())
    assert event.command.mailbox == "Entw&ürfe"


# ---------------------------------------------------------------------------
# tokens
# ---------------------------------------------------------------------------


def test_quoted_string_escapes() -> None:
    command = parse(b'a LOGIN "b\\"o\\\\b" "p w"')
    assert command == c.Login("a", b'b"o\\b', b"p w")


@pytest.mark.parametrize("line", [b'a LOGIN "bob', b'a LOGIN "b\\x" y', b"a LOGIN bob", b"a LOGIN bob pass extra"])
def test_bad_logins(line: bytes) -> None:
    bad(line)


def test_literal_shorter_than_announced_is_bad() -> None:
    bad(b"a LOGIN {5}\r\nab")


def test_nul_in_literal_is_bad() -> None:
    bad(b"a LOGIN {3}\r\na\x00b x")


def test_tag_may_not_contain_plus() -> None:
    with pytest.raises(ImapSyntaxError) as info:
        parse_command(b"a+ NOOP")
    assert getattr(info.value, "tag", None) is None


def test_error_carries_tag() -> None:
    assert getattr(bad(b"x1 FETCH"), "tag") == "x1"


def test_command_names_are_case_insensitive() -> None:
    assert parse(b"a noop") == c.Noop("a")
    assert parse(b"a uid fetch 1 flags").uid is True


# ---------------------------------------------------------------------------
# sequence sets
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "ranges"),
    [
        (b"1", ((1, 1),)),
        (b"1:*,5,7:9", ((1, None), (5, 5), (7, 9))),
        (b"*", ((None, None),)),
        (b"9:7", ((9, 7),)),
        (b"4294967295", ((4294967295, 4294967295),)),
    ],
)
def test_sequence_sets(text: bytes, ranges: tuple) -> None:
    assert parse_sequence_set(text).ranges == ranges


@pytest.mark.parametrize("text", [b"0", b"1:", b":1", b"1,,2", b"4294967296", b"1:2:3", b"$,1", b""])
def test_bad_sequence_sets(text: bytes) -> None:
    with pytest.raises(ImapSyntaxError):
        parse_sequence_set(text)


def test_saved_result() -> None:
    assert parse_sequence_set(b"$").saved


def test_sequence_set_contains_and_str() -> None:
    seq = parse_sequence_set(b"1:3,10:*")
    assert seq.contains(2, 20) and seq.contains(15, 20) and not seq.contains(5, 20)
    # "100:*" in a mailbox of 5 messages is 5:100
    assert parse_sequence_set(b"100:*").contains(5, 5)
    assert str(seq) == "1:3,10:*"


# ---------------------------------------------------------------------------
# mailbox names
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("wire", "name"),
    [
        (b"inbox", "INBOX"),
        (b'"InBoX"', "INBOX"),
        (b"INBOX/sub", "INBOX/sub"),
        (b'"Entw&APw-rfe"', "Entwürfe"),
        (b"~peter/mail/&U,BTFw-/&ZeVnLIqe-", "~peter/mail/台北/日本語"),
        (b'"a&-b"', "a&b"),
        ("\"Entwürfe\"".encode(), "Entwürfe"),  # raw UTF-8 is understood too
        (b"{3}\r\nabc", "abc"),
    ],
)
def test_mailbox_names(wire: bytes, name: str) -> None:
    assert parse(b"a SELECT " + wire).mailbox == name


@pytest.mark.parametrize("wire", [b'"&Jjo"', b'"&AGE-"', b'"a&"', b'"&2D0-"', b'"\xff"'])
def test_bad_mailbox_names(wire: bytes) -> None:
    assert "mailbox name" in bad(b"a SELECT " + wire).message


# ---------------------------------------------------------------------------
# authentication and session commands
# ---------------------------------------------------------------------------


def test_simple_commands() -> None:
    for name, kind in [
        (b"CAPABILITY", c.Capability),
        (b"NOOP", c.Noop),
        (b"LOGOUT", c.Logout),
        (b"STARTTLS", c.StartTls),
        (b"CHECK", c.Check),
        (b"CLOSE", c.Close),
        (b"UNSELECT", c.Unselect),
        (b"EXPUNGE", c.Expunge),
        (b"IDLE", c.Idle),
        (b"NAMESPACE", c.Namespace),
    ]:
        assert type(parse(b"t " + name)) is kind
        bad(b"t " + name + b" extra")


def test_authenticate_with_and_without_initial_response() -> None:
    assert parse(b"a AUTHENTICATE plain") == c.Authenticate("a", "PLAIN", None)
    assert parse(b"a AUTHENTICATE PLAIN AGJvYgBwdw==") == c.Authenticate("a", "PLAIN", b"AGJvYgBwdw==")
    assert parse(b"a AUTHENTICATE PLAIN =") == c.Authenticate("a", "PLAIN", b"=")
    bad(b"a AUTHENTICATE PLAIN ab!c")
    bad(b"a AUTHENTICATE")


def test_login_repr_hides_password() -> None:
    assert "secret" not in repr(parse(b"a LOGIN bob secret"))


def test_id() -> None:
    assert parse(b"a ID NIL") == c.Id("a", None)
    assert parse(b"a ID ()") == c.Id("a", ())
    assert parse(b'a ID ("name" "Thunderbird" "version" NIL)').parameters == (
        ("name", "Thunderbird"),
        ("version", None),
    )
    bad(b'a ID ("name")')
    bad(b"a ID (name x)")


def test_enable() -> None:
    assert parse(b"a ENABLE condstore QRESYNC utf8=accept").capabilities == ("CONDSTORE", "QRESYNC", "UTF8=ACCEPT")
    bad(b"a ENABLE")


# ---------------------------------------------------------------------------
# mailbox commands
# ---------------------------------------------------------------------------


def test_select_and_examine() -> None:
    select = parse(b"a SELECT INBOX")
    assert select == c.Select("a", "INBOX") and not select.read_only
    examine = parse(b"a EXAMINE INBOX (CONDSTORE)")
    assert isinstance(examine, c.Examine) and examine.read_only and examine.condstore


def test_select_qresync_forms() -> None:
    q = parse(b"a SELECT INBOX (QRESYNC (67890007 90060115194045000))").qresync
    assert q == c.QresyncParameters(67890007, 90060115194045000)
    q = parse(b"a SELECT INBOX (QRESYNC (1 2 1:10))").qresync
    assert q.known_uids == parse_sequence_set(b"1:10") and q.known_sequence_numbers is None
    q = parse(b"a SELECT INBOX (QRESYNC (1 2 41,43:211 (1,3:4 41,43:44)))").qresync
    assert str(q.known_sequence_numbers) == "1,3:4" and str(q.known_sequence_uids) == "41,43:44"
    q = parse(b"a SELECT INBOX (QRESYNC (1 2 (1 5)))").qresync
    assert q.known_uids is None and str(q.known_sequence_uids) == "5"
    select = parse(b"a SELECT INBOX (CONDSTORE QRESYNC (1 2))")
    assert select.condstore and select.qresync is not None


@pytest.mark.parametrize(
    "line",
    [
        b"a SELECT INBOX (FOO)",
        b"a SELECT INBOX ()",
        b"a SELECT INBOX (QRESYNC (0 2))",
        b"a SELECT INBOX (QRESYNC (1))",
        b"a SELECT INBOX (QRESYNC (1 2 $))",
        b"a SELECT",
    ],
)
def test_bad_selects(line: bytes) -> None:
    bad(line)


def test_create_delete_rename_subscribe() -> None:
    assert parse(b"a CREATE Drafts") == c.Create("a", "Drafts")
    assert parse(b"a CREATE Drafts (USE (\\Drafts))").special_use == ("\\Drafts",)
    assert parse(b"a DELETE foo") == c.Delete("a", "foo")
    assert parse(b'a RENAME foo "b&AOQ-r"') == c.Rename("a", "foo", "bär")
    assert parse(b"a SUBSCRIBE foo") == c.Subscribe("a", "foo")
    assert parse(b"a UNSUBSCRIBE foo") == c.Unsubscribe("a", "foo")
    bad(b"a CREATE x (FOO (\\Drafts))")
    bad(b"a RENAME foo")


def test_list_basic() -> None:
    command = parse(b'a LIST "" %')
    assert command == c.List("a", "", ("%",))
    assert not command.extended
    assert parse(b"a LIST ~/Mail/ *foo]").patterns == ("*foo]",)
    assert parse(b'a LIST "" "&APw-*"').patterns == ("ü*",)


def test_list_extended() -> None:
    command = parse(
        b'a LIST (SUBSCRIBED RECURSIVEMATCH) "" ("INBOX" "Drafts/%") RETURN (CHILDREN SPECIAL-USE STATUS (MESSAGES UNSEEN HIGHESTMODSEQ))'
    )
    assert command.selection_options == ("SUBSCRIBED", "RECURSIVEMATCH")
    assert command.patterns == ("INBOX", "Drafts/%")
    assert command.return_options == ("CHILDREN", "SPECIAL-USE", "STATUS")
    assert command.status_items == ("MESSAGES", "UNSEEN", "HIGHESTMODSEQ")
    assert command.extended
    assert parse(b'a LIST () "" % RETURN ()').extended


@pytest.mark.parametrize(
    "line",
    [
        b'a LIST (FOO) "" %',
        b'a LIST (RECURSIVEMATCH) "" %',
        b'a LIST "" % RETURN (FOO)',
        b'a LIST "" % RETURN (STATUS ())',
        b'a LIST "" % RETURN (STATUS (FOO))',
        b'a LIST "" % RETORN ()',
        b"a LIST foo",
    ],
)
def test_bad_lists(line: bytes) -> None:
    bad(line)


def test_lsub_status_namespace() -> None:
    assert parse(b'a LSUB "" *') == c.Lsub("a", "", "*")
    status = parse(b"a STATUS inbox (messages uidnext UIDVALIDITY unseen recent highestmodseq size)")
    assert status == c.Status(
        "a", "INBOX", ("MESSAGES", "UIDNEXT", "UIDVALIDITY", "UNSEEN", "RECENT", "HIGHESTMODSEQ", "SIZE")
    )
    bad(b"a STATUS INBOX ()")
    bad(b"a STATUS INBOX (FOO)")
    bad(b"a STATUS INBOX")


def test_quota_commands() -> None:
    assert parse(b'a GETQUOTA ""') == c.GetQuota("a", "")
    assert parse(b"a GETQUOTAROOT INBOX") == c.GetQuotaRoot("a", "INBOX")
    assert parse(b'a SETQUOTA "" (STORAGE 512 message 100)').limits == (("STORAGE", 512), ("MESSAGE", 100))
    assert parse(b'a SETQUOTA "" ()').limits == ()
    bad(b'a SETQUOTA "" (STORAGE)')


# ---------------------------------------------------------------------------
# APPEND
# ---------------------------------------------------------------------------


def test_append_with_flags_and_date() -> None:
    command = parse(b'a APPEND saved-messages (\\Seen) "07-Feb-1994 21:52:25 -0800" {5}\r\nhello')
    message = command.messages[0]
    assert command.mailbox == "saved-messages"
    assert message.flags == ("\\Seen",)
    assert message.internaldate == datetime(1994, 2, 7, 21, 52, 25, tzinfo=timezone(timedelta(hours=-8)))
    assert message.message == b"hello" and not message.binary


def test_append_date_with_space_padded_day() -> None:
    command = parse(b'a APPEND x " 7-Feb-1994 21:52:25 +0130" {1}\r\nx')
    assert command.messages[0].internaldate.day == 7


def test_multiappend_and_literal8() -> None:
    command = parse(b"a APPEND x {1+}\r\na (\\Flagged) ~{3}\r\nb\x00c UTF8 (~{1}\r\nd)")
    assert [m.message for m in command.messages] == [b"a", b"b\x00c", b"d"]
    assert [m.binary for m in command.messages] == [False, True, True]
    assert command.messages[1].flags == ("\\Flagged",)


@pytest.mark.parametrize(
    "line",
    [
        b'a APPEND x "hello"',
        b"a APPEND x",
        b"a APPEND x () ",
        b'a APPEND x "32-Feb-1994 21:52:25 -0800" {1}\r\nx',
        b'a APPEND x "07-Feb-1994 21:52:25" {1}\r\nx',
        b"a APPEND x {1}\r\nx extra",
    ],
)
def test_bad_appends(line: bytes) -> None:
    bad(line)


# ---------------------------------------------------------------------------
# FETCH
# ---------------------------------------------------------------------------


def test_fetch_macros() -> None:
    names = lambda line: [a.name for a in parse(line).attributes]  # noqa: E731
    assert names(b"a FETCH 1 ALL") == ["FLAGS", "INTERNALDATE", "RFC822.SIZE", "ENVELOPE"]
    assert names(b"a FETCH 1 fast") == ["FLAGS", "INTERNALDATE", "RFC822.SIZE"]
    assert names(b"a FETCH 1 FULL") == ["FLAGS", "INTERNALDATE", "RFC822.SIZE", "ENVELOPE", "BODY"]
    bad(b"a FETCH 1 (ALL)")


def test_fetch_simple_items() -> None:
    command = parse(
        b"a FETCH 1:* (UID FLAGS INTERNALDATE RFC822.SIZE ENVELOPE BODY BODYSTRUCTURE RFC822 RFC822.HEADER RFC822.TEXT MODSEQ)"
    )
    assert [a.name for a in command.attributes] == [
        "UID",
        "FLAGS",
        "INTERNALDATE",
        "RFC822.SIZE",
        "ENVELOPE",
        "BODY",
        "BODYSTRUCTURE",
        "RFC822",
        "RFC822.HEADER",
        "RFC822.TEXT",
        "MODSEQ",
    ]
    assert all(a.section is None for a in command.attributes)


@pytest.mark.parametrize(
    ("item", "section", "partial", "peek", "response"),
    [
        (b"BODY[]", SectionSpec(), None, False, "BODY[]"),
        (b"BODY.PEEK[]<0.1024>", SectionSpec(), (0, 1024), True, "BODY[]<0>"),
        (b"body[header]", SectionSpec((), "HEADER"), None, False, "BODY[HEADER]"),
        (b"BODY[TEXT]", SectionSpec((), "TEXT"), None, False, "BODY[TEXT]"),
        (b"BODY[1]", SectionSpec((1,)), None, False, "BODY[1]"),
        (b"BODY[1.2.3]", SectionSpec((1, 2, 3)), None, False, "BODY[1.2.3]"),
        (b"BODY[2.MIME]", SectionSpec((2,), "MIME"), None, False, "BODY[2.MIME]"),
        (b"BODY[4.2.TEXT]<10.5>", SectionSpec((4, 2), "TEXT"), (10, 5), False, "BODY[4.2.TEXT]<10>"),
        (b"BODY[3.HEADER]", SectionSpec((3,), "HEADER"), None, False, "BODY[3.HEADER]"),
        (
            b"BODY.PEEK[HEADER.FIELDS (From To \"Message-ID\")]",
            SectionSpec((), "HEADER.FIELDS", ("From", "To", "Message-ID")),
            None,
            True,
            "BODY[HEADER.FIELDS (FROM TO MESSAGE-ID)]",
        ),
        (
            b"BODY[1.HEADER.FIELDS.NOT (Received)]",
            SectionSpec((1,), "HEADER.FIELDS.NOT", ("Received",)),
            None,
            False,
            "BODY[1.HEADER.FIELDS.NOT (RECEIVED)]",
        ),
        (b"BINARY[1]", SectionSpec((1,)), None, False, "BINARY[1]"),
        (b"BINARY.PEEK[1.2]<0.10>", SectionSpec((1, 2)), (0, 10), True, "BINARY[1.2]<0>"),
    ],
)
def test_fetch_sections(
    item: bytes, section: SectionSpec, partial: tuple[int, int] | None, peek: bool, response: str
) -> None:
    (attribute,) = parse(b"a FETCH 1 " + item).attributes
    assert attribute.section == section
    assert attribute.partial == partial
    assert attribute.peek == peek
    assert attribute.response_name() == response


def test_binary_size() -> None:
    (attribute,) = parse(b"a FETCH 1 BINARY.SIZE[1]").attributes
    assert attribute.name == "BINARY.SIZE" and attribute.response_name() == "BINARY.SIZE[1]"
    assert not attribute.sets_seen


def test_sets_seen() -> None:
    attrs = parse(b"a FETCH 1 (BODY[] BODY.PEEK[] RFC822 RFC822.HEADER BINARY[1] BODY)").attributes
    assert [a.sets_seen for a in attrs] == [True, False, True, False, True, False]


@pytest.mark.parametrize(
    "item",
    [
        b"BODY[1.]",
        b"BODY[0]",
        b"BODY[1TEXT]",
        b"BODY[MIME]",
        b"BODY[FOO]",
        b"BODY[HEADER.FIELDS]",
        b"BODY[HEADER.FIELDS ()]",
        b"BODY[1]<5>",
        b"BODY[1]<5.0>",
        b"BINARY[HEADER]",
        b"BINARY[1.MIME]",
        b"BINARY.SIZE.PEEK[1]",
        b"RFC822.PEEK[]",
        b"FLAGS[1]",
        b"FROB",
        b"(FLAGS",
        b"()",
    ],
)
def test_bad_fetch_items(item: bytes) -> None:
    bad(b"a FETCH 1 " + item)


def test_uid_fetch_adds_uid_and_modifiers() -> None:
    command = parse(b"a UID FETCH 300:500 (FLAGS) (CHANGEDSINCE 12345 VANISHED)")
    assert command.uid and command.changed_since == 12345 and command.vanished
    assert [a.name for a in command.attributes] == ["FLAGS", "UID"]
    assert parse(b"a FETCH 1 FLAGS (CHANGEDSINCE 1)").changed_since == 1


@pytest.mark.parametrize(
    "line",
    [
        b"a FETCH 1 FLAGS (VANISHED CHANGEDSINCE 1)",  # VANISHED needs UID FETCH
        b"a UID FETCH 1 FLAGS (VANISHED)",  # and CHANGEDSINCE
        b"a FETCH 1 FLAGS (FOO)",
        b"a FETCH 1 FLAGS (CHANGEDSINCE x)",
        b"a FETCH 0 FLAGS",
        b"a FETCH FLAGS",
    ],
)
def test_bad_fetch_modifiers(line: bytes) -> None:
    bad(line)


def test_fetch_saved_result() -> None:
    assert parse(b"a FETCH $ FLAGS").sequence_set.saved


# ---------------------------------------------------------------------------
# STORE, COPY, MOVE, EXPUNGE
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "mode", "silent"),
    [
        (b"FLAGS", "replace", False),
        (b"+FLAGS", "add", False),
        (b"-flags.silent", "remove", True),
        (b"+FLAGS.SILENT", "add", True),
    ],
)
def test_store_modes(text: bytes, mode: str, silent: bool) -> None:
    command = parse(b"a STORE 2:4 " + text + b" (\\Deleted \\seen $Forwarded)")
    assert (command.mode, command.silent) == (mode, silent)
    assert command.flags == ("\\Deleted", "\\Seen", "$Forwarded")


def test_store_flags_without_parentheses_and_unchangedsince() -> None:
    command = parse(b"a UID STORE 1 (UNCHANGEDSINCE 320162338) +FLAGS.SILENT \\Deleted foo")
    assert command.uid and command.unchanged_since == 320162338
    assert command.flags == ("\\Deleted", "foo")
    assert parse(b"a STORE 1 FLAGS ()").flags == ()


@pytest.mark.parametrize(
    "line",
    [
        b"a STORE 1 FLAG (\\Seen)",
        b"a STORE 1 *FLAGS (\\Seen)",
        b"a STORE 1 +FLAGS",
        b"a STORE 1 (UNCHANGED 5) FLAGS ()",
        b"a STORE 1 FLAGS (\\Seen",
        b"a STORE 1 FLAGS.LOUD (\\Seen)",
    ],
)
def test_bad_stores(line: bytes) -> None:
    bad(line)


def test_copy_move_expunge() -> None:
    assert parse(b"a COPY 2:4 MEETING") == c.Copy("a", False, parse_sequence_set(b"2:4"), "MEETING")
    assert parse(b"a UID MOVE 42 Trash") == c.Move("a", True, parse_sequence_set(b"42"), "Trash")
    expunge = parse(b"a UID EXPUNGE 3000:3002")
    assert expunge.uid and str(expunge.uids) == "3000:3002"
    assert not parse(b"a EXPUNGE").uid
    bad(b"a UID EXPUNGE")
    bad(b"a UID LOGIN x y")
    bad(b"a COPY 1")


# ---------------------------------------------------------------------------
# SEARCH
# ---------------------------------------------------------------------------


def criteria(text: bytes) -> c.SearchKey:
    return parse(b"a SEARCH " + text).criteria


@pytest.mark.parametrize(
    ("text", "key"),
    [
        (b"ALL", c.SearchAll()),
        (b"ANSWERED", c.SearchFlag("\\Answered")),
        (b"deleted", c.SearchFlag("\\Deleted")),
        (b"DRAFT", c.SearchFlag("\\Draft")),
        (b"FLAGGED", c.SearchFlag("\\Flagged")),
        (b"SEEN", c.SearchFlag("\\Seen")),
        (b"UNANSWERED", c.SearchFlag("\\Answered", False)),
        (b"UNDELETED", c.SearchFlag("\\Deleted", False)),
        (b"UNDRAFT", c.SearchFlag("\\Draft", False)),
        (b"UNFLAGGED", c.SearchFlag("\\Flagged", False)),
        (b"UNSEEN", c.SearchFlag("\\Seen", False)),
        (b"KEYWORD $Junk", c.SearchFlag("$Junk")),
        (b"UNKEYWORD $Junk", c.SearchFlag("$Junk", False)),
        (b"RECENT", c.SearchRecent(True)),
        (b"OLD", c.SearchRecent(False)),
        (b"NEW", c.SearchAnd((c.SearchRecent(True), c.SearchFlag("\\Seen", False)))),
        (b"FROM smith", c.SearchHeader("From", "smith")),
        (b'TO "a b"', c.SearchHeader("To", "a b")),
        (b"CC x", c.SearchHeader("Cc", "x")),
        (b"BCC x", c.SearchHeader("Bcc", "x")),
        (b"SUBJECT {4}\r\nab c", c.SearchHeader("Subject", "ab c")),
        (b'HEADER X-Spam ""', c.SearchHeader("X-Spam", "")),
        (b"BODY hello", c.SearchBody("hello")),
        (b"TEXT hello", c.SearchText("hello")),
        (b"BEFORE 1-Feb-1994", c.SearchDate("internal", "before", date(1994, 2, 1))),
        (b'ON "01-feb-1994"', c.SearchDate("internal", "on", date(1994, 2, 1))),
        (b"SINCE 28-Feb-2024", c.SearchDate("internal", "since", date(2024, 2, 28))),
        (b"SENTBEFORE 1-Jan-2000", c.SearchDate("sent", "before", date(2000, 1, 1))),
        (b"SENTON 1-Jan-2000", c.SearchDate("sent", "on", date(2000, 1, 1))),
        (b"SENTSINCE 1-Jan-2000", c.SearchDate("sent", "since", date(2000, 1, 1))),
        (b"LARGER 1000", c.SearchSize("larger", 1000)),
        (b"SMALLER 10", c.SearchSize("smaller", 10)),
        (b"UID 1:*", c.SearchUid(parse_sequence_set(b"1:*"))),
        (b"UID $", c.SearchUid(parse_sequence_set(b"$"))),
        (b"2,4:*", c.SearchSequence(parse_sequence_set(b"2,4:*"))),
        (b"$", c.SearchSequence(parse_sequence_set(b"$"))),
        (b"MODSEQ 5", c.SearchModSeq(5)),
        (b'MODSEQ "/flags/\\\\draft" all 620162338', c.SearchModSeq(620162338, "/flags/\\draft", "all")),
        (b"OLDER 3600", c.SearchWithin("older", 3600)),
        (b"YOUNGER 60", c.SearchWithin("younger", 60)),
        (b"NOT SEEN", c.SearchNot(c.SearchFlag("\\Seen"))),
        (b"OR SEEN FLAGGED", c.SearchOr(c.SearchFlag("\\Seen"), c.SearchFlag("\\Flagged"))),
        (b"(SEEN)", c.SearchFlag("\\Seen")),
        (
            b"OR (FROM a TO b) NOT (SEEN DELETED)",
            c.SearchOr(
                c.SearchAnd((c.SearchHeader("From", "a"), c.SearchHeader("To", "b"))),
                c.SearchNot(c.SearchAnd((c.SearchFlag("\\Seen"), c.SearchFlag("\\Deleted")))),
            ),
        ),
        (b"SEEN FLAGGED", c.SearchAnd((c.SearchFlag("\\Seen"), c.SearchFlag("\\Flagged")))),
    ],
)
def test_search_keys(text: bytes, key: c.SearchKey) -> None:
    assert criteria(text) == key


@pytest.mark.parametrize(
    "text",
    [
        b"",
        b"FOO",
        b"FROM",
        b"OR SEEN",
        b"NOT",
        b"BEFORE 30-Feb-2024",
        b"BEFORE 1-Foo-2024",
        b"BEFORE 2024-01-01",
        b"LARGER x",
        b"UID",
        b"(SEEN",
        b"()",
        b"SEEN  FLAGGED",
        b"MODSEQ \"/flags/x\" bogus 5",
        b"OLDER 0",
        b"HEADER X",
    ],
)
def test_bad_search(text: bytes) -> None:
    bad(b"a SEARCH " + text)


def test_search_nesting_is_bounded() -> None:
    assert "deeply" in bad(b"a SEARCH " + b"NOT " * 500 + b"SEEN").message
    assert "deeply" in bad(b"a SEARCH " + b"(" * 500 + b"SEEN" + b")" * 500).message


def test_search_charset() -> None:
    command = parse(b"a SEARCH CHARSET ISO-8859-1 SUBJECT \"caf\xe9\"")
    assert command.charset == "ISO-8859-1"
    assert command.criteria == c.SearchHeader("Subject", "café")
    assert parse("a SEARCH SUBJECT \"café\"".encode()).criteria == c.SearchHeader("Subject", "café")


@pytest.mark.parametrize("charset", [b"X-UNKNOWN", b"rot13", b"base64"])
def test_unknown_search_charset_is_no_badcharset(charset: bytes) -> None:
    event = one(CommandReader(), b"a SEARCH CHARSET " + charset + b" ALL\r\n")
    assert isinstance(event, CommandError)
    assert event.status == "NO" and event.code.startswith("BADCHARSET")
    assert event.response().startswith(b"a NO [BADCHARSET")


def test_esearch_return_options() -> None:
    command = parse(b"a UID SEARCH RETURN (MIN max COUNT ALL SAVE) UNSEEN")
    assert command.uid and command.return_options == ("MIN", "MAX", "COUNT", "ALL", "SAVE")
    assert parse(b"a SEARCH RETURN () ALL").return_options == ()
    assert parse(b"a SEARCH ALL").return_options is None
    bad(b"a SEARCH RETURN (PARTIAL) ALL")
    bad(b"a SEARCH RETURN ALL")


# ---------------------------------------------------------------------------
# SORT and THREAD
# ---------------------------------------------------------------------------


def test_sort() -> None:
    command = parse(b"a UID SORT (REVERSE DATE subject REVERSE size) UTF-8 UNSEEN SINCE 1-Jan-2024")
    assert command.uid
    assert command.criteria == (
        c.SortCriterion("DATE", True),
        c.SortCriterion("SUBJECT"),
        c.SortCriterion("SIZE", True),
    )
    assert command.charset == "UTF-8"
    assert isinstance(command.search, c.SearchAnd)
    assert parse(b"a SORT RETURN (MIN) (ARRIVAL) US-ASCII ALL").return_options == ("MIN",)
    assert [k.key for k in parse(b"a SORT (DISPLAYFROM DISPLAYTO) utf-8 ALL").criteria] == [
        "DISPLAYFROM",
        "DISPLAYTO",
    ]


@pytest.mark.parametrize(
    "line",
    [
        b"a SORT () UTF-8 ALL",
        b"a SORT (REVERSE) UTF-8 ALL",
        b"a SORT (REVERSE REVERSE DATE) UTF-8 ALL",
        b"a SORT (FOO) UTF-8 ALL",
        b"a SORT (DATE) UTF-8",
        b"a SORT (DATE) ALL",
    ],
)
def test_bad_sorts(line: bytes) -> None:
    bad(line)


def test_thread() -> None:
    command = parse(b"a UID THREAD references UTF-8 SINCE 5-MAR-2000")
    assert command.uid and command.algorithm == "REFERENCES"
    assert command.search == c.SearchDate("internal", "since", date(2000, 3, 5))
    assert parse(b"a THREAD ORDEREDSUBJECT us-ascii ALL").algorithm == "ORDEREDSUBJECT"
    bad(b"a THREAD FOO UTF-8 ALL")
    bad(b"a THREAD REFERENCES UTF-8")
