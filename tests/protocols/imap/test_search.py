"""SEARCH evaluation over message views."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone

import pytest

from postern.protocols.imap import commands as c
from postern.protocols.imap.parser import parse_command
from postern.protocols.imap.search import RawMessageView, SearchContext, matches, search


def crlf(text: str) -> bytes:
    return text.replace("\n", "\r\n").encode("utf-8")


MESSAGES = [
    crlf(
        """From: =?utf-8?q?J=C3=B6rg?= <jorg@example.com>
To: Team <team@example.org>
Cc: boss@example.org
Subject: =?utf-8?q?Gr=C3=BC=C3=9Fe?= from Berlin
Date: Mon, 15 Jan 2024 23:30:00 -0800
Message-ID: <one@example.com>
X-Spam: no

Hello everyone, the meeting is at noon.
"""
    ),
    crlf(
        """From: Alice <alice@example.net>
To: jorg@example.com
Subject: Re: Grüße from Berlin
Date: Tue, 16 Jan 2024 08:00:00 +0000
Content-Type: text/html; charset=utf-8

<p>See you <b>there</b>!</p>
"""
    ),
    crlf(
        """From: bob@example.com
Subject: big attachment

"""
        + "x" * 5000
        + "\n"
    ),
]

INTERNAL = [
    datetime(2024, 1, 16, 7, 31, tzinfo=UTC),
    datetime(2024, 1, 16, 8, 1, tzinfo=UTC),
    datetime(2024, 2, 1, 12, 0, tzinfo=timezone(timedelta(hours=2))),
]
FLAGS = [frozenset({"\\Seen", "$Work"}), frozenset({"\\Flagged", "\\Answered"}), frozenset({"\\Deleted", "\\Draft"})]


@pytest.fixture
def views() -> list[RawMessageView]:
    return [
        RawMessageView(
            seq=i + 1,
            uid=(i + 1) * 10,
            raw=raw,
            internaldate=INTERNAL[i],
            flags=FLAGS[i],
            recent=i == 2,
            modseq=100 + i,
        )
        for i, raw in enumerate(MESSAGES)
    ]


CONTEXT = SearchContext(largest_seq=3, largest_uid=30, saved_uids=frozenset({20}), now=datetime(2024, 2, 1, 10, 30, tzinfo=UTC))


def found(views: list[RawMessageView], text: str, context: SearchContext = CONTEXT) -> list[int]:
    command = parse_command(("t SEARCH " + text).encode())
    assert isinstance(command, c.Search)
    return [m.seq for m in search(command.criteria, views, context)]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("ALL", [1, 2, 3]),
        ("SEEN", [1]),
        ("UNSEEN", [2, 3]),
        ("ANSWERED", [2]),
        ("UNANSWERED", [1, 3]),
        ("FLAGGED", [2]),
        ("DELETED", [3]),
        ("UNDELETED", [1, 2]),
        ("DRAFT", [3]),
        ("UNDRAFT", [1, 2]),
        ("KEYWORD $work", [1]),
        ("UNKEYWORD $Work", [2, 3]),
        ("RECENT", [3]),
        ("OLD", [1, 2]),
        ("NEW", [3]),
        ("FROM jörg", [1]),
        ("FROM JORG@EXAMPLE", [1]),
        ("FROM alice", [2]),
        ("TO jorg", [2]),
        ("CC boss", [1]),
        ("BCC boss", []),
        ("SUBJECT grüße", [1, 2]),
        ('SUBJECT "re: gr"', [2]),
        ("HEADER X-Spam no", [1]),
        ('HEADER X-Spam ""', [1]),
        ('HEADER x-spam ""', [1]),
        ("BODY meeting", [1]),
        ("BODY there", [2]),
        ("BODY Berlin", []),
        ("TEXT Berlin", [1, 2]),
        ("TEXT noon", [1]),
        # internal dates compare by day in their own zone
        ("ON 16-Jan-2024", [1, 2]),
        ("BEFORE 16-Jan-2024", []),
        ("SINCE 17-Jan-2024", [3]),
        ("BEFORE 1-Feb-2024", [1, 2]),
        # sent dates: the Date field's own day (15 Jan in -0800)
        ("SENTON 15-Jan-2024", [1]),
        ("SENTSINCE 16-Jan-2024", [2]),
        ("SENTBEFORE 16-Jan-2024", [1]),
        ("LARGER 1000", [3]),
        ("SMALLER 1000", [1, 2]),
        ("1", [1]),
        ("2:*", [2, 3]),
        ("*", [3]),
        ("1,3", [1, 3]),
        ("UID 20", [2]),
        ("UID 25:*", [3]),
        ("UID $", [2]),
        ("$", [2]),
        ("MODSEQ 101", [2, 3]),
        ("YOUNGER 3600", [3]),
        ("OLDER 3600", [1, 2]),
        ("NOT SEEN", [2, 3]),
        ("OR SEEN FLAGGED", [1, 2]),
        ("OR (SEEN FROM alice) DRAFT", [3]),
        ("NOT (FLAGGED OR SEEN DRAFT)", [1, 2, 3]),
        ("SEEN FROM jorg", [1]),
        ("SEEN FROM alice", []),
    ],
)
def test_search(views: list[RawMessageView], text: str, expected: list[int]) -> None:
    assert found(views, text) == expected


def test_empty_mailbox_star_matches_nothing(views: list[RawMessageView]) -> None:
    empty = SearchContext(largest_seq=0, largest_uid=0)
    assert search(c.SearchSequence(c.SequenceSet(((None, None),))), [], empty) == []


def test_search_with_charset(views: list[RawMessageView]) -> None:
    command = parse_command(b"t SEARCH CHARSET ISO-8859-1 SUBJECT gr\xfc\xdfe")
    assert [m.seq for m in search(command.criteria, views, CONTEXT)] == [1, 2]


def test_missing_date_never_matches_sent_keys() -> None:
    view = RawMessageView(seq=1, uid=1, raw=b"Subject: x\r\n\r\n", internaldate=datetime(2024, 1, 1, tzinfo=UTC))
    assert not matches(c.SearchDate("sent", "since", date(1970, 1, 1)), view, CONTEXT)
    assert matches(c.SearchNot(c.SearchDate("sent", "since", date(1970, 1, 1))), view, CONTEXT)


def test_hand_built_deep_keys_do_not_recurse_forever() -> None:
    key: c.SearchKey = c.SearchAll()
    for _ in range(300):
        key = c.SearchNot(key)
    view = RawMessageView(seq=1, uid=1, raw=b"", internaldate=datetime(2024, 1, 1, tzinfo=UTC))
    assert matches(key, view, CONTEXT) in (True, False)
