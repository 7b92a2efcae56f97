"""SORT and THREAD; the expected answers are what Dovecot 2.3.19 gave for the
same twelve messages (checked by hand)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from postern.protocols.imap import commands as c
from postern.protocols.imap.encode import encode_threads
from postern.protocols.imap.parser import parse_command
from postern.protocols.imap.search import RawMessageView, sort_messages
from postern.protocols.imap.thread import (
    ThreadMessage,
    base_subject,
    thread_orderedsubject,
    thread_references,
)

# (message-id, references, subject, date, from, to)
SPECS = [
    ("<a@x>", "", "hello", "Mon, 1 Jan 2024 10:00:00 +0000", "Alice <alice@a.org>", "zed@z.org"),
    ("<b@x>", "<a@x>", "Re: hello", "Mon, 1 Jan 2024 11:00:00 +0000", "bob@b.org", "Amy <amy@a.org>"),
    ("<c@x>", "<a@x> <b@x>", "Re: hello", "Mon, 1 Jan 2024 12:00:00 +0000", "carl@c.org", ""),
    ("<d@x>", "", "other", "Sun, 31 Dec 2023 10:00:00 +0000", '"Zoe" <dan@d.org>', "b@b.org"),
    ("<e@x>", "<missing@x>", "orphan", "Tue, 2 Jan 2024 10:00:00 +0000", "eve@e.org", ""),
    ("<f@x>", "<missing2@x>", "siblings", "Tue, 2 Jan 2024 11:00:00 +0000", "fay@f.org", ""),
    ("<g@x>", "<missing2@x>", "Re: siblings", "Tue, 2 Jan 2024 12:00:00 +0000", "gus@g.org", ""),
    ("", "", "Re: other", "Wed, 3 Jan 2024 10:00:00 +0000", "hal@h.org", ""),
    ("<i@x>", "", "hello", "Wed, 3 Jan 2024 11:00:00 +0000", "ivy@i.org", ""),
    ("<a@x>", "", "dup", "Wed, 3 Jan 2024 12:00:00 +0000", "jon@j.org", ""),
    ("<k@x>", "<k@x>", "loop", "Thu, 4 Jan 2024 10:00:00 +0000", "kim@k.org", ""),
    ("<l@x>", "<c@x>", "[list] Re: hello", "Thu, 4 Jan 2024 09:00:00 +0000", "", ""),
]


def message(mid: str, refs: str, subject: str, date: str, sender: str, to: str) -> bytes:
    lines = []
    if mid:
        lines.append(f"Message-ID: {mid}")
    if refs:
        lines.append(f"References: {refs}")
    lines += [f"Subject: {subject}", f"Date: {date}"]
    if sender:
        lines.append(f"From: {sender}")
    if to:
        lines.append(f"To: {to}")
    return ("\r\n".join(lines) + "\r\n\r\nbody\r\n").encode()


@pytest.fixture
def views() -> list[RawMessageView]:
    return [
        RawMessageView(seq=i + 1, uid=i + 1, raw=message(*spec), internaldate=datetime(2024, 1, 1, tzinfo=UTC))
        for i, spec in enumerate(SPECS)
    ]


def test_thread_references_like_dovecot(views: list[RawMessageView]) -> None:
    threads = thread_references([v.thread_message(v.seq) for v in views])
    assert encode_threads(threads) == b"(4 8)((1 2 3 12)(9))(5)((6)(7))(10)(11)"


def test_thread_orderedsubject_like_dovecot(views: list[RawMessageView]) -> None:
    threads = thread_orderedsubject([v.thread_message(v.seq) for v in views])
    assert encode_threads(threads) == b"(4 8)(1 (2)(3)(9)(12))(5)(6 7)(10)(11)"


def test_thread_answers_with_uids(views: list[RawMessageView]) -> None:
    threads = thread_references([v.thread_message(v.seq * 100) for v in views[:3]])
    assert encode_threads(threads) == b"(100 200 300)"


@pytest.mark.parametrize(
    ("criteria", "expected"),
    [
        (b"(SUBJECT)", [10, 1, 2, 3, 9, 12, 11, 5, 4, 8, 6, 7]),
        (b"(FROM)", [12, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11]),
        (b"(REVERSE DATE)", [11, 12, 10, 9, 8, 7, 6, 5, 3, 2, 1, 4]),
        (b"(TO SIZE)", [8, 10, 9, 12, 11, 5, 6, 3, 7, 2, 4, 1]),
        (b"(DISPLAYFROM)", [12, 1, 2, 3, 5, 6, 7, 8, 9, 10, 11, 4]),
    ],
)
def test_sort_like_dovecot(views: list[RawMessageView], criteria: bytes, expected: list[int]) -> None:
    command = parse_command(b"s SORT " + criteria + b" UTF-8 ALL")
    assert isinstance(command, c.Sort)
    assert [m.seq for m in sort_messages(views, command.criteria)] == expected


def test_sort_ties_keep_mailbox_order_even_reversed(views: list[RawMessageView]) -> None:
    # every internal date is the same: ARRIVAL ties everywhere
    assert [m.seq for m in sort_messages(views, [c.SortCriterion("ARRIVAL", True)])] == list(range(1, 13))
    assert [m.seq for m in sort_messages(list(reversed(views)), [])] == list(range(1, 13))


def test_sort_date_falls_back_to_internal_date() -> None:
    undated = RawMessageView(seq=1, uid=1, raw=b"Subject: x\r\n\r\n", internaldate=datetime(2030, 1, 1, tzinfo=UTC))
    dated = RawMessageView(
        seq=2, uid=2, raw=b"Date: Mon, 1 Jan 2024 10:00:00 +0000\r\n\r\n", internaldate=datetime(2000, 1, 1, tzinfo=UTC)
    )
    assert [m.seq for m in sort_messages([undated, dated], [c.SortCriterion("DATE")])] == [2, 1]
    assert [m.seq for m in sort_messages([undated, dated], [c.SortCriterion("ARRIVAL")])] == [2, 1]


@pytest.mark.parametrize(
    ("subject", "base", "is_reply"),
    [
        ("hello", "hello", False),
        ("Re: hello", "hello", True),
        ("RE: Re: re:hello", "hello", True),
        ("Fwd: hello", "hello", True),
        ("Fw: hello", "hello", True),
        ("Re[2]: hello", "hello", True),
        ("[list] Re: hello", "hello", True),
        ("Re: [list] hello", "hello", True),
        ("hello (fwd)", "hello", True),
        ("hello (FWD)  (fwd) ", "hello", True),
        ("[fwd: hello]", "hello", True),
        ("[Fwd: Re: [list] hello (fwd)]", "hello", True),
        ("[list]", "[list]", False),
        ("[a] [b] hello", "hello", False),
        ("  hello \t  world ", "hello world", False),
        ("", "", False),
        ("Re:", "", True),
        ("Reply: x", "Reply: x", False),
    ],
)
def test_base_subject(subject: str, base: str, is_reply: bool) -> None:
    assert base_subject(subject) == (base, is_reply)


def _message(number: int, mid: str | None, refs: tuple[str, ...] = (), subject: str = "s", hour: int = 0) -> ThreadMessage:
    return ThreadMessage(number, number, mid, refs, subject, datetime(2024, 1, 1, hour, tzinfo=UTC))


def test_references_loops_and_missing_ids_do_not_hang() -> None:
    messages = [
        _message(1, "<a>", ("<b>",), "x", 1),
        _message(2, "<b>", ("<a>",), "y", 2),
        _message(3, None, ("<a>", "<a>", "<b>"), "z", 3),
        _message(4, "<d>", ("<d>", "<d>"), "w", 4),
    ]
    threads = thread_references(messages)
    numbers = encode_threads(threads)
    for n in (b"1", b"2", b"3", b"4"):
        assert n in numbers


def test_references_dummy_with_one_child_at_root_is_removed() -> None:
    threads = thread_references([_message(1, "<a>", ("<gone>",))])
    assert encode_threads(threads) == b"(1)"


def test_empty_inputs() -> None:
    assert thread_references([]) == [] and thread_orderedsubject([]) == []


def test_very_deep_reference_chain() -> None:
    # Each message references all of its ancestors, as mailing lists do (trimmed).
    messages = [_message(1, "<m1>")] + [
        _message(n, f"<m{n}>", (f"<m{n - 1}>",), "Re: s", 0) for n in range(2, 3001)
    ]
    (thread,) = thread_references(messages)
    depth = 0
    node = thread
    while node.children:
        node = node.children[0]
        depth += 1
    assert depth == 2999
    assert encode_threads([thread]).startswith(b"(1 2 3 ")
