"""SEARCH (keys, charsets, ESEARCH, SEARCHRES), SORT and THREAD."""

from __future__ import annotations

from tests.helpers import make_message

from .conftest import ImapDoor, status_of


async def _mailbox(imap: ImapDoor, alice: str) -> None:
    await imap.deliver(alice, make_message("Apples", body="red fruit\r\n", From="Zed <zed@example.org>", Message_ID="<a@x>"), flags=("\\Seen",))
    await imap.deliver(alice, make_message("Re: Apples", body="green ones\r\n", From="Amy <amy@example.org>", Message_ID="<b@x>", In_Reply_To="<a@x>", Date="Thu, 03 Nov 2011 10:00:00 +0000"))
    await imap.deliver(alice, make_message("Pears", body="Grüße aus Köln\r\n", From="Bob <bob@example.org>", Message_ID="<c@x>", Date="Tue, 01 Nov 2011 10:00:00 +0000"), flags=("\\Flagged", "$Work"))


async def test_search_keys(imap: ImapDoor, alice: str) -> None:
    await _mailbox(imap, alice)
    client = await imap.client()
    await client.ok("SELECT INBOX")

    async def search(criteria: str) -> str:
        lines = await client.ok(f"SEARCH {criteria}")
        return lines[0]

    assert await search("ALL") == "* SEARCH 1 2 3"
    assert await search("SEEN") == "* SEARCH 1"
    assert await search("UNSEEN") == "* SEARCH 2 3"
    assert await search("FLAGGED KEYWORD $Work") == "* SEARCH 3"
    assert await search("SUBJECT apples") == "* SEARCH 1 2"
    assert await search("FROM amy") == "* SEARCH 2"
    assert await search("BODY fruit") == "* SEARCH 1"
    assert await search("TEXT green") == "* SEARCH 2"
    assert await search("OR FROM zed FROM bob") == "* SEARCH 1 3"
    assert await search("NOT SUBJECT apples") == "* SEARCH 3"
    assert await search("HEADER In-Reply-To <a@x>") == "* SEARCH 2"
    assert await search("SENTBEFORE 2-Nov-2011") == "* SEARCH 3"
    assert await search("SENTON 3-Nov-2011") == "* SEARCH 2"
    assert await search("SINCE 1-Jan-2000") == "* SEARCH 1 2 3"
    assert await search("LARGER 1 SMALLER 100000") == "* SEARCH 1 2 3"
    assert await search("2:*") == "* SEARCH 2 3"
    assert await search("UID 1,3") == "* SEARCH 1 3"
    assert await search("NEW") == "* SEARCH 2 3"
    assert await search("(SEEN) (SUBJECT apples)") == "* SEARCH 1"
    assert await search("SUBJECT nothing") == "* SEARCH"
    assert await search("CHARSET UTF-8 BODY {5+}\r\nKöln") == "* SEARCH 3"
    assert await search("CHARSET US-ASCII SUBJECT pears") == "* SEARCH 3"
    lines = await client.ok("UID SEARCH SUBJECT apples")
    assert lines == ["* SEARCH 1 2"]
    _, tagged = await client.command("SEARCH CHARSET KLINGON ALL")
    assert tagged.split()[1:3] == ["NO", "[BADCHARSET"]
    _, tagged = await client.command("SEARCH BOGUS")
    assert status_of(tagged) == "BAD"
    await client.close()


async def test_esearch_and_searchres(imap: ImapDoor, alice: str) -> None:
    await _mailbox(imap, alice)
    client = await imap.client()
    await client.ok("SELECT INBOX")
    lines = await client.ok("SEARCH RETURN (MIN MAX COUNT) ALL")
    assert lines == ['* ESEARCH (TAG "a3") MIN 1 MAX 3 COUNT 3']
    lines = await client.ok("UID SEARCH RETURN () UNSEEN")
    assert lines == ['* ESEARCH (TAG "a4") UID ALL 2:3']
    lines = await client.ok("SEARCH RETURN (COUNT) SUBJECT nothing")
    assert lines == ['* ESEARCH (TAG "a5") COUNT 0']
    assert await client.ok("SEARCH RETURN (SAVE) SUBJECT apples") == []
    lines = await client.ok("FETCH $ UID")
    assert [line.split()[1] for line in lines] == ["1", "2"]
    lines = await client.ok("SEARCH $ SEEN")
    assert lines == ["* SEARCH 1"]
    await client.close()


async def test_sort(imap: ImapDoor, alice: str) -> None:
    await _mailbox(imap, alice)
    client = await imap.client()
    await client.ok("SELECT INBOX")
    assert await client.ok("SORT (SUBJECT) UTF-8 ALL") == ["* SORT 1 2 3"]
    assert await client.ok("SORT (FROM) UTF-8 ALL") == ["* SORT 2 3 1"]
    assert await client.ok("SORT (REVERSE DATE) UTF-8 ALL") == ["* SORT 2 1 3"]
    assert await client.ok("UID SORT (ARRIVAL) UTF-8 UNSEEN") == ["* SORT 2 3"]
    assert await client.ok("SORT (SIZE) US-ASCII SUBJECT nothing") == ["* SORT"]
    await client.close()


async def test_thread(imap: ImapDoor, alice: str) -> None:
    await _mailbox(imap, alice)
    client = await imap.client()
    await client.ok("SELECT INBOX")
    assert await client.ok("THREAD REFERENCES UTF-8 ALL") == ["* THREAD (3)(1 2)"]
    assert await client.ok("UID THREAD ORDEREDSUBJECT UTF-8 ALL") == ["* THREAD (3)(1 2)"]
    _, tagged = await client.command("THREAD REFS UTF-8 ALL")
    assert status_of(tagged) == "NO"
    await client.close()
