"""Real POP3 clients from Debian fetch a folder of 200 messages from postern over
loopback: getmail6 into a Maildir keeping the messages on the server, then fetchmail
(through an MDA into a folder) deleting them, which moves them to Trash.

CI installs both (``.ci/run``); there a missing client fails the test, elsewhere it
skips."""

from __future__ import annotations

import random
from pathlib import Path

from tests.helpers import make_message
from tests.protocols.pop3.conftest import PASSWORD, Pop3
from tests.real_clients import fetchmail_without_keeping, require_client, run_client

COUNT = 200


def _messages() -> list[bytes]:
    """Varied messages: dot lines, bare LF endings, no final newline, 8-bit text, a
    few large ones."""
    rng = random.Random(1939)
    messages = []
    for index in range(COUNT):
        lines = [f"line {n} of message {index}" for n in range(rng.randint(1, 40))]
        if index % 5 == 0:
            lines += [".", "..", ".starts with a dot", "", " .space then dot"]
        if index % 17 == 0:
            lines += ["x" * 998 for _ in range(300)]  # about 300 KB
        body = "\r\n".join(lines) + "\r\n"
        raw = make_message(f"Message {index} \u00e9t\u00e9", body, Content_Type="text/plain; charset=utf-8", Content_Transfer_Encoding="8bit")
        if index % 7 == 0:
            raw = raw.replace(b"\r\n", b"\n")  # stored with bare LF
        if index % 11 == 0:
            raw = raw.rstrip(b"\r\n")  # no final line ending
        messages.append(raw)
    return messages


def _canonical(raw: bytes) -> bytes:
    """A message as a Unix mail client stores it: LF line endings, ending in one."""
    text = raw.replace(b"\r\n", b"\n")
    return text if text.endswith(b"\n") else text + b"\n"


def _message_id(raw: bytes) -> bytes:
    for line in _canonical(raw).split(b"\n"):
        if line.lower().startswith(b"message-id:"):
            return line.split(b":", 1)[1].strip()
    raise AssertionError("no Message-ID")


def _check_arrived(expected: list[bytes], received: list[bytes]) -> None:
    """Every message arrived once and intact: the client's copy is the original,
    below whatever trace headers the client added on top."""
    assert len(received) == len(expected)
    by_id = {_message_id(raw): _canonical(raw) for raw in expected}
    seen = set()
    for copy in received:
        copy = copy.replace(b"\r\n", b"\n")
        message_id = _message_id(copy)
        assert message_id in by_id and message_id not in seen
        seen.add(message_id)
        assert copy.endswith(by_id[message_id]), message_id


async def _seed(pop3: Pop3) -> list[bytes]:
    messages = _messages()
    inbox = await pop3.inbox_id()
    for raw in messages:
        await pop3.runtime.mailstore.append(pop3.user_id, inbox, raw)
    return messages


async def test_getmail_keeps_then_fetchmail_deletes(pop3: Pop3, tmp_path: Path) -> None:
    getmail = require_client("getmail")
    require_client("fetchmail")
    messages = await _seed(pop3)

    # getmail6, keeping the messages on the server (delete = false), into a Maildir
    # (written by a one-line MDA: getmail's own Maildir writer refuses to run as root,
    # which CI is).
    maildir = tmp_path / "Maildir"
    for sub in ("cur", "new", "tmp"):
        (maildir / sub).mkdir(parents=True)
    getmail_dir = tmp_path / "getmail"
    getmail_dir.mkdir()
    to_maildir = getmail_dir / "to-maildir.sh"
    to_maildir.write_text(
        f'#!/bin/sh\nname="$(mktemp -p {maildir}/tmp msg.XXXXXXXX)" && cat > "$name" && mv "$name" {maildir}/new/\n', encoding="utf-8"
    )
    to_maildir.chmod(0o700)
    rc = getmail_dir / "getmailrc"
    rc.write_text(
        "[retriever]\n"
        "type = SimplePOP3Retriever\n"
        "server = 127.0.0.1\n"
        f"port = {pop3.port}\n"
        "username = alice\n"
        f"password = {PASSWORD}\n"
        "\n[destination]\n"
        "type = MDA_external\n"
        f"path = {to_maildir}\n"
        "allow_root_commands = true\n"
        "unixfrom = false\n"
        "\n[options]\n"
        "verbose = 1\n"
        "read_all = false\n"
        "delete = false\n"
        "delivered_to = false\n"
        "received = false\n",
        encoding="utf-8",
    )
    output = await run_client(getmail, "--getmaildir", str(getmail_dir), "--rcfile", str(rc), ok=(0, 1))
    received = [path.read_bytes() for path in sorted((maildir / "new").iterdir())]
    assert len(received) == COUNT, output
    _check_arrived(messages, received)
    assert await pop3.count("INBOX") == COUNT
    assert await pop3.count("Trash") == 0

    # Run again: getmail remembers the UIDLs and fetches nothing new.
    await run_client(getmail, "--getmaildir", str(getmail_dir), "--rcfile", str(rc), ok=(0, 1))
    assert len(list((maildir / "new").iterdir())) == COUNT

    # fetchmail over STLS, not keeping them (the server moves them to Trash), through
    # an MDA into a folder.
    output, received = await fetchmail_without_keeping(tmp_path, proto="POP3", port=pop3.port, password=PASSWORD)
    assert len(received) == COUNT, output
    assert "STLS" in output  # fetchmail upgraded the connection (certificate not checked)
    _check_arrived(messages, received)
    assert await pop3.count("INBOX") == 0
    assert await pop3.count("Trash") == COUNT
    assert sorted(_canonical(raw) for raw in await pop3.raw_messages("Trash")) == sorted(_canonical(raw) for raw in messages)
