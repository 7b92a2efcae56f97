"""Regression tests for the imaptest compliance groups postern once failed, one (or a
few) per group, over a real socket: each names the imaptest group it stands for."""

from __future__ import annotations

import asyncio
import re
from typing import Any

from postern.events import EventBus
from postern.protocols.imap.server import ImapServices, start_listener

from .conftest import PASSWORD, ImapDoor, RawClient, status_of


async def _binary_lines(client: RawClient, text: str) -> list[bytes]:
    """Send a command and collect its raw response bytes (literals may hold NUL)."""
    tag = client.next_tag()
    await client.send(f"{tag} {text}\r\n")
    out: list[bytes] = []
    while True:
        line = await client.reader.readline()
        m = re.search(rb"~?\{(\d+)\}\r\n$", line)
        if m:
            line += await client.reader.readexactly(int(m.group(1)))
            line += await client.reader.readline()
        out.append(line)
        if line.startswith(tag.encode() + b" "):
            return out


async def test_append_binary_literal8(imap: ImapDoor, alice: str) -> None:
    """append-binary: a literal8 APPEND's binary part is stored base64-encoded:
    BODY[1] carries no NUL, BINARY[1] gives back the bytes sent (bare LFs too)."""
    raw = (
        b"From: user@domain.org\r\nMime-Version: 1.0\r\nContent-Type: application/octet-stream\r\n"
        b"Content-Transfer-Encoding: binary\r\n\r\n\x00-\xe4\n\r\n\n"
    )
    client = await imap.client()
    await client.send(b"a1 APPEND INBOX ~{%d+}\r\n" % len(raw) + raw + b"\r\n")
    _, tagged = await client.until_tag("a1")
    assert status_of(tagged) == "OK", tagged
    await client.ok("SELECT INBOX")
    lines = await _binary_lines(client, "FETCH 1 (BINARY.SIZE[1] BINARY.PEEK[1])")
    assert b"BINARY.SIZE[1] 7" in lines[0], lines
    assert b"BINARY[1] ~{7}\r\n\x00-\xe4\n\r\n\n" in lines[0], lines
    lines = await _binary_lines(client, "FETCH 1 (BODY.PEEK[1])")
    assert b"\x00" not in lines[0], lines  # base64 text, in a plain literal
    assert b"AC3kCg0KCg==" in lines[0], lines
    await client.close()


QP_MESSAGE = (
    b"From: user@domain.org\r\nMime-Version: 1.0\r\n"
    b'Content-Type: multipart/mixed; boundary="foo\r\n bar"\r\n\r\nRoot MIME prologue\r\n\r\n'
    b"--foo bar\r\nContent-Type: text/x-myown; charset=us-ascii\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n"
    b"hello  \r\nbar=\r\n\r\nfoo\t=\r\nbar\r\nfoo\t \t= \r\n=62\r\nfoo = \t\r\nbar\r\nfoo =\r\n=62\r\n"
    b"foo  \r\nbar=\r\n\r\nfoo_bar\r\n\r\n--foo bar--\r\nRoot MIME epilogue\r\n"
)
QP_DECODED = b"hello\r\nbar\r\nfoo\tbar\r\nfoo\t \tb\r\nfoo bar\r\nfoo b\r\nfoo\r\nbar\r\nfoo_bar\r\n"


async def test_fetch_binary_quoted_printable(imap: ImapDoor, alice: str) -> None:
    """fetch-binary-mime-qp: trailing white space dropped, soft line breaks joined;
    partial fetches count in the decoded bytes."""
    await imap.deliver(alice, QP_MESSAGE)
    client = await imap.client()
    await client.ok("SELECT INBOX")
    lines = await client.ok("FETCH 1 (BINARY.SIZE[1])")
    assert lines == [f"* 1 FETCH (BINARY.SIZE[1] {len(QP_DECODED)})"]
    assert len(QP_DECODED) == 65
    for start, length in ((0, 10), (10, 10), (15, 10), (40, 100)):
        raw = await _binary_lines(client, f"FETCH 1 (BINARY.PEEK[1]<{start}.{length}>)")
        want = QP_DECODED[start : start + length]
        assert raw[0].startswith(f"* 1 FETCH (BINARY[1]<{start}> ".encode()), raw
        assert want in raw[0], (want, raw)
    await client.close()


# -- a second "process": its own services and event bus over the same storage ---------


async def _other_process(imap: ImapDoor) -> tuple[int, Any]:
    """A listener like another worker process's: same database and blobs, its own
    ImapServices and an event bus that hears nothing of this process's changes."""
    services = ImapServices(
        imap.runtime.mailstore,
        imap.runtime.accounts,
        EventBus(),
        appender=imap.runtime.committer.append,
    )
    server = await start_listener(services, "127.0.0.1", 0)
    return int(server.sockets[0].getsockname()[1]), server


async def _client_at(port: int) -> RawClient:
    client = await RawClient.connect(port)
    await client.ok(f'LOGIN alice "{PASSWORD}"')
    return client


async def test_select_recent_in_one_session_across_processes(
    imap: ImapDoor, alice: str
) -> None:
    """select: EXAMINE and STATUS show \\Recent without taking it; SELECT takes it, in
    one session only, even when the other session is in another process."""
    port, server = await _other_process(imap)
    try:
        one = await imap.client()
        await one.ok(f"APPEND INBOX {{{len(SIMPLE)}+}}\r\n{SIMPLE.decode()}")
        await one.ok(f"APPEND INBOX {{{len(SIMPLE)}+}}\r\n{SIMPLE.decode()}")
        assert "* 2 RECENT" in await one.ok("EXAMINE INBOX")
        await one.ok("CLOSE")
        status = await one.ok("STATUS INBOX (MESSAGES RECENT)")
        assert status == ['* STATUS "INBOX" (MESSAGES 2 RECENT 2)']
        two = await _client_at(port)
        selected = await asyncio.gather(one.ok("SELECT INBOX"), two.ok("SELECT INBOX"))
        recents = sorted(
            next(line for line in lines if line.endswith(" RECENT"))
            for lines in selected
        )
        assert recents == ["* 0 RECENT", "* 2 RECENT"]
        # A new message is \Recent in exactly one of the two sessions.
        await imap.deliver(alice, SIMPLE)
        for c in (one, two):
            assert "* 3 EXISTS" in await c.ok("NOOP")
        fetched = [await c.ok("FETCH 3 FLAGS") for c in (one, two)]
        flags = [next(line for line in lines if "FETCH" in line) for lines in fetched]
        assert sum("\\Recent" in line for line in flags) == 1, flags
        await one.ok("CLOSE")
        assert await one.ok("STATUS INBOX (RECENT)") == ['* STATUS "INBOX" (RECENT 0)']
        for c in (one, two):
            await c.close()
    finally:
        server.close()


async def test_changes_of_another_process_seen_at_next_command(
    imap: ImapDoor, alice: str
) -> None:
    """store, expunge, expunge2, append: what connection 1 completed is in connection
    2's next NOOP, even when no event reaches connection 2 (another process)."""
    for _ in range(3):
        await imap.deliver(alice, SIMPLE)
    port, server = await _other_process(imap)
    try:
        one = await imap.client()
        two = await _client_at(port)
        await one.ok("SELECT INBOX")
        await two.ok("SELECT INBOX")
        await one.ok("STORE 1 +FLAGS (\\Flagged $Hello)")
        lines = await two.ok("NOOP")
        # the new keyword is announced before the FETCH that uses it
        flags_at = next(
            i for i, line in enumerate(lines) if line.startswith("* FLAGS (")
        )
        fetch_at = next(
            i
            for i, line in enumerate(lines)
            if line.startswith("* 1 FETCH (") and "FLAGS (" in line
        )
        assert (
            flags_at < fetch_at
            and "$Hello" in lines[flags_at]
            and "$Hello" in lines[fetch_at]
        ), lines
        await one.ok("STORE 2 +FLAGS.SILENT (\\Deleted)")
        await one.ok("EXPUNGE")
        lines = await two.ok("CHECK")
        assert "* 2 EXPUNGE" in lines, lines
        await one.ok(f"APPEND INBOX {{{len(SIMPLE)}+}}\r\n{SIMPLE.decode()}")
        lines = await two.ok("NOOP")
        assert "* 3 EXISTS" in lines, lines
        # FETCH may not expunge (RFC 3501 §7.4.1), but shows flag changes
        await one.ok("STORE 1 +FLAGS.SILENT (\\Deleted)")
        await one.ok("STORE 3 +FLAGS.SILENT (\\Seen)")
        await one.ok("EXPUNGE")
        lines = await two.ok("FETCH 2 UID")
        assert not any("EXPUNGE" in line for line in lines), lines
        lines = await two.ok("NOOP")
        assert "* 1 EXPUNGE" in lines, lines
        for c in (one, two):
            await c.close()
    finally:
        server.close()


# -- single-connection groups -------------------------------------------------------------


SIMPLE = b"From: a@example.org\r\nSubject: s\r\n\r\nbody\r\n"


async def test_atoms_mailbox_name_that_cannot_exist(imap: ImapDoor, alice: str) -> None:
    """atoms: a valid atom that is no valid mUTF-7 name: NO, and the session goes on."""
    client = await imap.client()
    _, tagged = await client.command("SELECT !#$&'+,-.0123456789:;<=>?@^_`|[}")
    assert status_of(tagged) == "NO", tagged
    await client.ok('LIST "" !#$&\'+,-.0123456789:;<=>?@^_`|[}%*')
    _, tagged = await client.command("SELECT ~foo")
    assert status_of(tagged) == "NO"
    await client.close()


async def test_move_into_the_selected_mailbox(imap: ImapDoor, alice: str) -> None:
    """move: MOVE into the selected mailbox is allowed: a new UID, COPYUID, EXPUNGE, EXISTS."""
    await imap.deliver(alice, SIMPLE)
    client = await imap.client()
    await client.ok("SELECT INBOX")
    lines = await client.ok("MOVE 1 INBOX")
    assert any(re.fullmatch(r"\* OK \[COPYUID \d+ 1 2\] .*", line) for line in lines), (
        lines
    )
    assert "* 1 EXPUNGE" in lines and "* 1 EXISTS" in lines, lines
    assert (await client.ok("FETCH 1 UID"))[0].startswith("* 1 FETCH (UID 2")
    await client.close()


ADDRESSES = [
    b"From: user-from@domain.org\r\nTo: user-to@domain.org\r\n\r\n1\r\n",
    b"From: RealFrom <user-from@domain.org>\r\n\r\n2\r\n",
    b"From: <user-from (comment)@ (comment) domain.org>\r\n\r\n3\r\n",
    b"From: user-from@domain.org (RealFrom)\r\n\r\n4\r\n",
    b"From: user-from1@domain.org, user-from2@domain.org\r\n\r\n5\r\n",
]


async def test_search_address_with_comments(imap: ImapDoor, alice: str) -> None:
    """search-addresses: FROM local@domain matches the address however it is written."""
    for raw in ADDRESSES:
        await imap.deliver(alice, raw)
    client = await imap.client()
    await client.ok("SELECT INBOX")
    assert await client.ok("SEARCH FROM user-from@domain.org") == ["* SEARCH 1 2 3 4"]
    assert await client.ok("SEARCH FROM realfrom") == ["* SEARCH 2 4"]
    await client.close()


async def test_sort_cc_with_a_group(imap: ImapDoor, alice: str) -> None:
    """sort-addresses: a field that starts with a group sorts by the group's name."""
    for cc in (
        b"user2@domain2.org (foo bar)",
        b"user2: blah@domain1.org;",
        b"user1@domain1.org",
    ):
        await imap.deliver(alice, b"From: a@b.c\r\nCc: " + cc + b"\r\n\r\nx\r\n")
    client = await imap.client()
    await client.ok("SELECT INBOX")
    assert await client.ok("SORT (CC) US-ASCII ALL") == ["* SORT 3 1 2"]
    assert await client.ok("SORT (REVERSE CC) US-ASCII ALL") == ["* SORT 1 2 3"]
    assert await client.ok("SORT (CC REVERSE ARRIVAL) US-ASCII ALL") == ["* SORT 3 2 1"]
    await client.close()


async def test_sort_subject_base_subject(imap: ImapDoor, alice: str) -> None:
    """sort-subject: RFC 5256 base subjects compared as i;ascii-casemap ("[" and "_"
    after letters); "[xyz]" alone keeps its brackets."""
    subjects = [
        b"b",
        b"_",
        b"Re: [FWD: a]",
        b"[xyz]",
        b"[foo] Fwd: c (fwd)",
        b"=?iso-8859-1?q?RE:_B?=",
    ]
    for subject in subjects:
        await imap.deliver(
            alice, b"From: a@b.c\r\nSubject: " + subject + b"\r\n\r\nx\r\n"
        )
    client = await imap.client()
    await client.ok("SELECT INBOX")
    assert await client.ok("SORT (SUBJECT) US-ASCII ALL") == ["* SORT 3 1 6 5 4 2"]
    await client.close()


async def test_esearch_condstore_modseq(imap: ImapDoor, alice: str) -> None:
    """esearch-condstore: the first CONDSTORE command says HIGHESTMODSEQ; ESEARCH's MODSEQ
    is that of the messages returned (MIN, MAX), else the highest of all matched."""
    for _ in range(4):
        await imap.deliver(alice, SIMPLE)
    client = await imap.client()
    await client.ok("SELECT INBOX")
    lines = await client.ok("FETCH 1 MODSEQ")
    assert lines[0].startswith("* OK [HIGHESTMODSEQ "), lines
    modseq = {}
    for n in (1, 3, 2, 4):
        line = (await client.ok(f"STORE {n} +FLAGS \\Seen"))[0]
        modseq[n] = int(re.search(r"MODSEQ \((\d+)\)", line).group(1))  # type: ignore[union-attr]
    program = 'MODSEQ "/flags/\\\\seen" all 1'
    assert (await client.ok(f"SEARCH RETURN (MIN) 1:3 {program}"))[0].endswith(
        f"MIN 1 MODSEQ {modseq[1]}"
    )
    assert (await client.ok(f"SEARCH RETURN (MAX) 1:3 {program}"))[0].endswith(
        f"MAX 3 MODSEQ {modseq[3]}"
    )
    assert (await client.ok(f"SEARCH RETURN () 1:3 {program}"))[0].endswith(
        f"ALL 1:3 MODSEQ {modseq[2]}"
    )
    await client.close()


async def test_subscriptions_outlive_mailboxes(imap: ImapDoor, alice: str) -> None:
    """subscribe, listext: CREATE subscribes nothing, DELETE unsubscribes nothing, LSUB
    shows unsubscribed parents \\Noselect, LIST (SUBSCRIBED) shows the deleted one
    \\NonExistent, RECURSIVEMATCH gives CHILDINFO."""
    client = await imap.client()
    for name in ("t/a", "t/b/c", "t/d"):
        await client.ok(f"CREATE {name}")
    await client.ok("SUBSCRIBE t/b/c")
    await client.ok("SUBSCRIBE t/d")
    await client.ok("DELETE t/d")
    assert await client.ok('LSUB "" t/%') == [
        '* LSUB (\\Noselect) "/" "t/b"',
        '* LSUB (\\Noselect) "/" "t/d"',
    ]
    lines = await client.ok('LIST (SUBSCRIBED) "" t/*')
    assert lines == [
        '* LIST (\\Subscribed \\HasNoChildren) "/" "t/b/c"',
        '* LIST (\\Subscribed \\NonExistent) "/" "t/d"',
    ]
    lines = await client.ok('LIST (SUBSCRIBED RECURSIVEMATCH) "" t/% RETURN (CHILDREN)')
    assert '* LIST (\\HasChildren) "/" "t/b" (CHILDINFO ("SUBSCRIBED"))' in lines, lines
    assert not any('"t/a"' in line for line in lines)
    await client.ok("UNSUBSCRIBE t/d")
    await client.ok("UNSUBSCRIBE t/b/c")
    assert await client.ok('LSUB "" t/*') == []
    await client.close()


# -- extensions ---------------------------------------------------------------------


async def test_esort_and_partial(imap: ImapDoor, alice: str) -> None:
    """esort, sort-partial, search-partial: ESEARCH answers, in sorted order."""
    for n in range(5):
        await imap.deliver(
            alice, b"From: a@b.c\r\nSubject: " + str(5 - n).encode() + b"\r\n\r\nx\r\n"
        )
    client = await imap.client()
    await client.ok("SELECT INBOX")
    assert (await client.ok("SORT RETURN (MIN MAX COUNT) (SUBJECT) US-ASCII ALL"))[
        0
    ].endswith(") MIN 5 MAX 1 COUNT 5")
    assert (await client.ok("SORT RETURN (ALL) (SUBJECT) US-ASCII ALL"))[0].endswith(
        ") ALL 5,4,3,2,1"
    )
    assert (await client.ok("SORT RETURN (PARTIAL 4:2) (ARRIVAL) US-ASCII ALL"))[
        0
    ].endswith(") PARTIAL (2:4 2:4)")
    assert (await client.ok("SEARCH RETURN (PARTIAL 6:6) ALL"))[0].endswith(
        ") PARTIAL (6:6 NIL)"
    )
    assert (await client.ok("SEARCH RETURN (PARTIAL 2:10) 1:2,4:5"))[0].endswith(
        ") PARTIAL (2:10 2,4:5)"
    )
    for bad in ("1", "1:*", "*:1"):
        _, tagged = await client.command(f"SEARCH RETURN (PARTIAL {bad}) ALL")
        assert status_of(tagged) == "BAD"
    await client.close()


async def test_sort_display(imap: ImapDoor, alice: str) -> None:
    """sort-display-to: the display name, else the address, a group's name."""
    for to in (
        b"foo bar <a@b.c>",
        b"b@c.d",
        b"=?iso-8859-1?q?foo_aar?= <e@f.g>",
        b"a: xx@xx.org;",
        b"z: aa@aa.org;",
    ):
        await imap.deliver(alice, b"From: x@y.z\r\nTo: " + to + b"\r\n\r\nx\r\n")
    client = await imap.client()
    await client.ok("SELECT INBOX")
    assert await client.ok("SORT (DISPLAYTO) US-ASCII ALL") == ["* SORT 4 2 3 1 5"]
    await client.close()


async def test_search_context_update(imap: ImapDoor, alice: str) -> None:
    """search-context-update: a search kept up to date says what joins and leaves it;
    CANCELUPDATE stops it."""
    for _ in range(5):
        await imap.deliver(alice, SIMPLE)
    client = await imap.client()
    await client.ok("SELECT INBOX")
    assert await client.ok("SEARCH RETURN (UPDATE) SEEN") == ['* ESEARCH (TAG "a3")']
    assert '* ESEARCH (TAG "a3") ADDTO (0 1:2,4)' in await client.ok(
        "STORE 1,2,4 +FLAGS.SILENT \\Seen"
    )
    assert '* ESEARCH (TAG "a3") REMOVEFROM (0 1:2)' in await client.ok(
        "STORE 1,2 -FLAGS.SILENT \\Seen"
    )
    await client.ok("STORE 3:5 +FLAGS.SILENT \\Deleted")
    lines = await client.ok("EXPUNGE")
    assert lines.index('* ESEARCH (TAG "a3") REMOVEFROM (0 4)') < lines.index(
        "* 3 EXPUNGE"
    ), lines
    await client.ok('CANCELUPDATE "a3"')
    assert not any(
        "ESEARCH" in line for line in await client.ok("STORE 1 +FLAGS \\Seen")
    )
    await client.close()


async def test_catenate(imap: ImapDoor, alice: str) -> None:
    """catenate: texts and URLs of the user's own messages, put together; a URL that
    names nothing is NO [BADURL]; a missing mailbox [TRYCREATE]."""
    await imap.deliver(alice, b"From: foo@example.com\r\n\r\nHello world body\r\n")
    client = await imap.client()
    await client.ok("CREATE Other")
    lines = await client.ok(
        'APPEND Other CATENATE (URL "/INBOX/;uid=1/;section=header" TEXT {7+}\r\nbody1\r\n)'
    )
    assert lines == []
    _, tagged = await client.command(
        'APPEND Other CATENATE (URL "/INBOX;uidvalidity=12345/;uid=1")'
    )
    assert status_of(tagged) == "NO" and "[BADURL" in tagged, tagged
    _, tagged = await client.command('APPEND Nope CATENATE (URL "/INBOX/;uid=1")')
    assert "[TRYCREATE]" in tagged, tagged
    await client.ok("SELECT Other")
    lines = await client.ok("FETCH 1 BODY.PEEK[]")
    assert lines[0].endswith("From: foo@example.com\r\n\r\nbody1\r\n)"), lines
    await client.close()
