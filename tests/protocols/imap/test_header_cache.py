"""The header cache: entries equal what parsing the bytes gives, keyed by (blob key,
prefix), bounded by bytes (least recently used first), misses read in batches; and
FETCH ENVELOPE / header SEARCH over a server answer the same cold and warm."""

from __future__ import annotations

import hashlib
from collections import namedtuple
from collections.abc import Sequence
from datetime import UTC, datetime

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from postern.mailstore.imap_view import _META_FIELDS, ImapMessage, to_message, to_messages
from postern.mime.imap_structure import decoded_headers, envelope
from postern.protocols.imap import encode as enc
from postern.protocols.imap.header_cache import HEAD_BYTES, READ_BYTES, HeaderCache, ParsedHeader, parse_header
from postern.protocols.imap.search import HeaderView, RawMessageView

from .conftest import ImapDoor

FUZZ = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
NAMES = ("From", "to", "CC", "bcc", "Subject", "Date", "Message-ID", "x-spam", "Received", "In-Reply-To", "Nope")
INTERNAL = datetime(2024, 5, 6, 7, 8, 9, tzinfo=UTC)

MESSAGES = [
    b"From: =?utf-8?q?J=C3=B6rg?= <jorg@example.com>\r\nTo: Team <team@example.org>, b@example.org\r\n"
    b"Cc: boss@example.org\r\nSubject: =?utf-8?q?Gr=C3=BC=C3=9Fe?=\r\n from Berlin\r\nDate: Mon, 15 Jan 2024 23:30:00 -0800\r\n"
    b"Message-ID: <one@example.com>\r\nX-Spam: no\r\nX-Spam: maybe\r\n\r\nHello everyone.\r\n",
    "From: Müller <m@example.de>\r\nSubject: Grüße\r\nReferences: <a@x> <b@x>\r\n\r\nbody\r\n".encode(),
    b"Subject: no date, no from\r\nIn-Reply-To: <parent@x>\r\n\r\n",
    b"",
    b"not a header line\r\nSubject: after junk\r\nDate: garbage\r\n\r\nX-After: body\r\n",
    b"To: undisclosed-recipients:;\r\nFrom: group: a@b, c@d;\r\n\r\n",
]


def message(raw: bytes, prefix: bytes = b"", uid: int = 1) -> ImapMessage:
    return ImapMessage(uid, 1, len(prefix) + len(raw), 0, (), hashlib.sha256(raw).hexdigest(), prefix)


def values(parsed: ParsedHeader, name: str) -> list[str]:
    return list(HeaderView(1, message(b""), False, parsed).header_values(name))


def assert_same_answers(raw: bytes) -> None:
    parsed = parse_header(raw, summary=True)
    assert parsed.envelope == enc.encode_envelope(envelope(raw))
    cached = HeaderView(1, ImapMessage(1, 1, len(raw), int(INTERNAL.timestamp() * 1000), (), "k", b""), False, parsed)
    direct = RawMessageView(1, 1, raw, INTERNAL)
    decoded = decoded_headers(raw)
    for name in NAMES + NAMES:  # the second time from the values decoded the first
        assert list(cached.header_values(name)) == list(direct.header_values(name)) == [v for k, v in decoded if k == name.lower()]
    assert cached.sent_date() == direct.sent_date()
    for name in ("From", "To", "Cc", "Bcc"):
        assert cached.first_address(name) == direct.first_address(name)
    assert cached.thread_message(7) == direct.thread_message(7)


def test_entries_equal_what_parsing_the_bytes_gives() -> None:
    for raw in MESSAGES:
        assert_same_answers(raw)


HEADER_TOKENS = [
    b"From: ", b"To: ", b"Cc: ", b"Subject: ", b"Date: ", b"Message-ID: ", b"References: ", b"X-Spam: ", b"Received: ",
    b"Mon, 15 Jan 2024 23:30:00 -0800", b"1 Feb 99 10:00 GMT", b"<a@x>", b"a@b", b'"Q, x" <q@x>', b"g: a@b;", b"(c)",
    b"=?utf-8?q?J=C3=B6rg?=", b"=?iso-8859-1?b?5A==?=", b"\xc3\xa4", b"\xff", b" ", b"\t", b"\r\n", b"\n", b"\r\n ",
    b"\r\n\r\n", b":", b",", b";", b"body", b"\x00",
]  # fmt: skip


@FUZZ
@given(st.lists(st.sampled_from(HEADER_TOKENS), max_size=40))
def test_cached_answers_equal_parsed_answers(tokens: list[bytes]) -> None:
    assert_same_answers(b"".join(tokens))


@FUZZ
@given(st.binary(max_size=300))
def test_random_bytes_parse_alike(raw: bytes) -> None:
    assert_same_answers(raw)


def test_same_blob_with_another_prefix_is_another_entry() -> None:
    raw = MESSAGES[0]
    cache = HeaderCache()
    first, second = b"X-Original-To: one@example.com\r\n", b"X-Original-To: two@example.com\r\n"
    cache.put(message(raw).blob_key, first, parse_header(first + raw))
    assert cache.get(message(raw).blob_key, second) is None
    cache.put(message(raw).blob_key, second, parse_header(second + raw))
    one = cache.get(message(raw).blob_key, first)
    two = cache.get(message(raw).blob_key, second)
    assert one is not None and two is not None
    assert values(one, "X-Original-To") == ["one@example.com"]
    assert values(two, "X-Original-To") == ["two@example.com"]
    assert len(cache) == 2


def test_eviction_is_by_bytes_least_recently_used_first() -> None:
    parsed = [parse_header(b"Subject: message %d\r\n\r\n" % i) for i in range(40)]
    one_entry = HeaderCache()
    one_entry.put("k0", b"", parsed[0])
    cost = one_entry.bytes
    assert cost > 0
    cache = HeaderCache(max_bytes=cost * 10 + cost // 2)
    for i in range(10):
        cache.put(f"k{i}", b"", parsed[i])
    assert len(cache) == 10
    assert cache.get("k0", b"") is parsed[0]  # now the most recently used
    cache.put("k10", b"", parsed[10])
    assert cache.bytes <= cache.max_bytes
    assert cache.get("k1", b"") is None  # the least recently used went first
    assert cache.get("k0", b"") is parsed[0]
    for i in range(11, 40):
        cache.put(f"k{i}", b"", parsed[i])
    assert len(cache) == 10
    assert cache.bytes <= cache.max_bytes
    assert cache.get("k39", b"") is parsed[39]


def test_a_larger_entry_pushes_out_several_smaller_ones() -> None:
    small = parse_header(b"Subject: s\r\n\r\n")
    big = parse_header(b"Subject: " + b"b" * 3000 + b"\r\n\r\n")
    probe = HeaderCache()
    probe.put("s", b"", small)
    cache = HeaderCache(max_bytes=probe.bytes * 200)
    for i in range(200):
        cache.put(f"s{i}", b"", small)
    cache.put("big", b"", big)
    assert cache.get("big", b"") is big
    assert len(cache) < 200 - 1
    assert cache.bytes <= cache.max_bytes


def test_an_entry_too_large_for_its_share_is_not_kept() -> None:
    cache = HeaderCache(max_bytes=64 * 1024)
    huge = parse_header(b"Subject: " + b"h" * 20_000 + b"\r\n\r\n")
    cache.put("huge", b"", huge)
    assert cache.get("huge", b"") is None
    assert cache.bytes == 0


def test_putting_an_entry_again_does_not_count_it_twice() -> None:
    cache = HeaderCache()
    parsed = parse_header(MESSAGES[0])
    cache.put("k", b"p", parsed)
    once = cache.bytes
    cache.put("k", b"p", parsed)
    assert cache.bytes == once
    assert len(cache) == 1


class Reader:
    """Stands in for ImapView's reading: records what it is asked for."""

    def __init__(self, raws: dict[str, bytes]) -> None:
        self.raws = raws
        self.batches: list[list[int]] = []
        self.whole: list[int] = []

    async def raw_many(self, messages: Sequence[ImapMessage]) -> list[bytes]:
        self.batches.append([m.uid for m in messages])
        self.whole.extend(m.uid for m in messages)
        return [m.prefix + self.raws[m.blob_key] for m in messages]

    async def heads_many(self, messages: Sequence[ImapMessage], limit: int) -> list[bytes]:
        self.batches.append([m.uid for m in messages])
        return [m.prefix + self.raws[m.blob_key][:limit] for m in messages]


async def test_only_misses_are_read_in_batches_bounded_by_bytes() -> None:
    bodies = [b"Subject: m%d\r\n\r\n" % i + b"x" * (READ_BYTES // 3) for i in range(7)]
    messages = [message(raw, uid=i + 1) for i, raw in enumerate(bodies)]
    reader = Reader({m.blob_key: raw for m, raw in zip(messages, bodies, strict=True)})
    cache = HeaderCache()
    await cache.parsed_many(reader, messages[2:4])
    assert reader.batches == [[3, 4]]  # only their heads: together
    reader.batches.clear()
    parsed = await cache.parsed_many(reader, messages)
    assert [values(p, "Subject") for p in parsed] == [[f"m{i}"] for i in range(7)]
    read = [uid for batch in reader.batches for uid in batch]
    assert read == [1, 2, 5, 6, 7]
    assert reader.whole == []
    for batch in reader.batches:
        assert len(batch) == 1 or sum(min(messages[u - 1].size, HEAD_BYTES) for u in batch) <= READ_BYTES
    reader.batches.clear()
    again = await cache.parsed_many(reader, messages)
    assert reader.batches == []
    assert again == parsed


async def test_summary_is_read_when_asked_and_then_kept() -> None:
    raw = MESSAGES[1]
    reader = Reader({message(raw).blob_key: raw})
    cache = HeaderCache()
    (plain,) = await cache.parsed_many(reader, [message(raw)])
    assert plain.summary is None
    (full,) = await cache.parsed_many(reader, [message(raw)], summary=True)
    assert full.summary is not None and full.summary.references == ("<a@x>", "<b@x>")
    assert len(reader.batches) == 2
    assert reader.whole == [1]  # the summary reads the whole message
    (again,) = await cache.parsed_many(reader, [message(raw)])
    assert again is full
    assert len(reader.batches) == 2


async def test_a_header_longer_than_the_head_is_read_whole() -> None:
    short = b"Subject: short\r\nFrom: a@b\r\n\r\n" + b"body " * (HEAD_BYTES // 2)
    long = b"Subject: long\r\n" + b"X-Pad: " + b"p" * HEAD_BYTES + b"\r\nFrom: c@d\r\n\r\nbody\r\n"
    exact = b"Subject: exact\r\n" + b"x" * (HEAD_BYTES - 17)  # no body, no empty line, all of it read
    messages = [message(short, uid=1), message(long, uid=2), message(exact, uid=3)]
    reader = Reader({m.blob_key: raw for m, raw in zip(messages, (short, long, exact), strict=True)})
    parsed = await HeaderCache().parsed_many(reader, messages)
    assert reader.whole == [2]
    assert parsed == [parse_header(short), parse_header(long), parse_header(exact)]
    assert values(parsed[1], "From") == ["c@d"]


def test_to_messages_equals_to_message() -> None:
    Row = namedtuple("Row", _META_FIELDS)  # type: ignore[misc]  # the fields of imap_store's rows
    rows = [
        Row(1, 5, 100, 1_700_000_000_000, True, False, False, False, True, "[]", "a" * 64, b""),
        Row(2, 6, 200, 1_700_000_000_001, False, True, True, False, False, '["$Work","Later"]', "b" * 64, b"Pre: x\r\n"),
        Row(3, 7, 300, 1_700_000_000_002, 1, 0, 0, 1, 0, None, "c" * 64, None),
        Row(4, 8, 400, 1_700_000_000_003, True, False, False, False, True, "[]", "d" * 64, memoryview(b"mv")),
    ]
    fast = to_messages(rows)
    assert fast == [to_message(r) for r in rows]
    assert fast[0].flags == ("\\Answered", "\\Seen")
    assert fast[1].flags == ("\\Flagged", "\\Draft", "$Work", "Later")
    assert fast[2].flags == ("\\Deleted", "\\Seen")
    assert fast[3].prefix == b"mv" and type(fast[3].prefix) is bytes
    assert fast[1].internaldate == datetime.fromtimestamp(1_700_000_000.001, UTC)


async def test_fetch_envelope_and_header_search_answer_alike_cold_and_warm(imap: ImapDoor, alice: str) -> None:
    for raw in MESSAGES:
        await imap.deliver(alice, raw or b"\r\n")
    client = await imap.client()
    await client.ok("SELECT INBOX")
    cold_fetch = await client.ok("FETCH 1:* (FLAGS ENVELOPE)")
    cold_search = [await client.ok(f"SEARCH {key}") for key in ("FROM jorg", "SUBJECT after", "HEADER X-Spam maybe", "SENTBEFORE 1-Jan-2025")]
    assert len(imap.services.header_cache) == len(MESSAGES)
    warm_fetch = await client.ok("FETCH 1:* (FLAGS ENVELOPE)")
    warm_search = [await client.ok(f"SEARCH {key}") for key in ("FROM jorg", "SUBJECT after", "HEADER X-Spam maybe", "SENTBEFORE 1-Jan-2025")]
    assert warm_fetch == cold_fetch
    assert warm_search == cold_search == [["* SEARCH 1"], ["* SEARCH 5"], ["* SEARCH 1"], ["* SEARCH 1"]]
    # With a body section the bytes are read and parsed: the same ENVELOPE.
    with_body = await client.ok("FETCH 1 (ENVELOPE BODY.PEEK[HEADER.FIELDS (Subject)])")
    assert with_body[0].split("(ENVELOPE ", 1)[1].split(" BODY[")[0] == cold_fetch[0].split(" ENVELOPE ", 1)[1][:-1]
    await client.ok("STORE 1 +FLAGS (\\Flagged)")
    lines = await client.ok("FETCH 1 (FLAGS ENVELOPE)")
    assert "\\Flagged" in lines[0]
    assert lines[0].split(" ENVELOPE ", 1)[1] == cold_fetch[0].split(" ENVELOPE ", 1)[1]
    await client.close()


async def test_large_messages_answer_alike_from_their_heads(imap: ImapDoor, alice: str) -> None:
    big = b"From: Big <big@example.org>\r\nSubject: large\r\n\r\n" + b"line of body text\r\n" * (HEAD_BYTES // 8)
    long_header = b"Subject: long header\r\n" + b"X-Pad: " + b"q" * (HEAD_BYTES * 2) + b"\r\nFrom: Late <late@example.org>\r\n\r\nbody\r\n"
    await imap.deliver(alice, big)
    await imap.deliver(alice, long_header)
    client = await imap.client()
    await client.ok("SELECT INBOX")
    cached = await client.ok("FETCH 1:2 (ENVELOPE)")
    parsed = await client.ok("FETCH 1:2 (ENVELOPE BODY.PEEK[HEADER.FIELDS (X-None)])")
    for line, with_bytes in zip(cached, parsed, strict=True):
        assert with_bytes.split("(ENVELOPE ", 1)[1].split(" BODY[")[0] == line.split("(ENVELOPE ", 1)[1][:-1]
    assert await client.ok("SEARCH FROM late") == ["* SEARCH 2"]
    assert await client.ok("SEARCH FROM big SUBJECT large") == ["* SEARCH 1"]
    await client.close()
