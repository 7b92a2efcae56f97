"""Real IMAP clients from Debian against postern over loopback.

* ``mbsync`` (isync) syncs an INBOX of 300 messages into a local Maildir and back:
  flags set in the Maildir reach postern, flags set in postern reach the Maildir's
  file names, and messages added to the Maildir are uploaded (APPEND).
* ``fetchmail`` over IMAP (upgrading with STARTTLS) fetches a folder through an MDA
  and deletes it on the server (STORE \\Deleted, EXPUNGE).

CI installs both (``.ci/run``); there a missing client fails the test, elsewhere it
skips. Neither client sees the real $HOME: their configuration and state live in
the test's temporary folder."""

from __future__ import annotations

import os
import random
import re
from pathlib import Path

from tests.helpers import make_message
from tests.protocols.imap.conftest import PASSWORD, ImapDoor
from tests.real_clients import fetchmail_without_keeping, require_client, run_client

COUNT = 300
RUN_TIMEOUT = 120
_UID = re.compile(r",U=(\d+)")


def _messages(count: int, seed: int) -> list[bytes]:
    rng = random.Random(seed)
    out = []
    for index in range(count):
        lines = [f"line {n} of message {index}" for n in range(rng.randint(1, 30))]
        if index % 9 == 0:
            lines += [".", "..", "From the start of a line", ""]
        raw = make_message(
            f"Message {index} \u00e9t\u00e9", "\r\n".join(lines) + "\r\n",
            Message_ID=f"<m{seed}.{index}@example.org>", Content_Type="text/plain; charset=utf-8", Content_Transfer_Encoding="8bit",
        )
        out.append(raw)
    return out


def _message_id(raw: bytes) -> str:
    m = re.search(rb"^message-id:\s*(<[^>]*>)", raw, re.IGNORECASE | re.MULTILINE)
    assert m, raw[:200]
    return m.group(1).decode()


def _without_tuid(raw: bytes) -> bytes:
    """A message as mbsync stored it, LF line endings, without the ``X-TUID`` header
    mbsync adds to the copies it transfers to recognise them."""
    return re.sub(rb"^X-TUID: [^\n]*\n", b"", raw.replace(b"\r\n", b"\n"), count=1, flags=re.MULTILINE)


def _maildir_flags(name: str) -> str:
    return name.rsplit(":2,", 1)[1] if ":2," in name else ""


def _maildir_files(box: Path) -> dict[int, Path]:
    """The Maildir's messages by the server UID that mbsync put in their names."""
    files: dict[int, Path] = {}
    for sub in ("cur", "new"):
        for path in (box / sub).iterdir():
            m = _UID.search(path.name)
            assert m, f"no UID in {path.name}"
            assert int(m.group(1)) not in files
            files[int(m.group(1))] = path
    return files


async def _server_messages(imap: ImapDoor, user_id: str) -> dict[int, tuple[str, tuple[str, ...]]]:
    """INBOX as postern holds it: UID -> (Message-ID, flags)."""
    view = imap.services.view
    folder = await imap.folder_id(user_id)
    out = {}
    for message in await view.messages(folder, [(1, None)]):
        out[message.uid] = (_message_id(await view.raw(message)), message.flags)
    return out


async def test_mbsync_syncs_both_ways(imap: ImapDoor, alice: str, tmp_path: Path) -> None:
    mbsync = require_client("mbsync")
    messages = _messages(COUNT, 1)
    for index, raw in enumerate(messages):
        # A few arrive flagged on the server already.
        await imap.deliver(alice, raw, flags=("\\Flagged",) if index % 25 == 0 else ())

    home = tmp_path / "home"
    home.mkdir()
    maildir = tmp_path / "Maildir"
    maildir.mkdir()
    config = home / "mbsyncrc"
    config.write_text(
        "IMAPAccount postern\n"
        "Host 127.0.0.1\n"
        f"Port {imap.port}\n"
        "User alice\n"
        f'Pass "{PASSWORD}"\n'
        "SSLType None\n"
        "AuthMechs LOGIN\n"
        "Timeout 60\n"
        "\n"
        "IMAPStore remote\n"
        "Account postern\n"
        "\n"
        "MaildirStore local\n"
        f"Path {maildir}/\n"
        f"Inbox {maildir}/INBOX\n"
        "\n"
        "Channel inbox\n"
        "Far :remote:INBOX\n"
        "Near :local:INBOX\n"
        "Create Near\n"
        "Sync All\n"
        "Expunge None\n"
        "SyncState *\n",
        encoding="utf-8",
    )
    env = {**os.environ, "HOME": str(home)}

    async def sync() -> str:
        return await run_client(mbsync, "-c", str(config), "-V", "inbox", env=env, timeout=RUN_TIMEOUT)

    # 1. Down: every message, intact, with the server's flags in the file names.
    output = await sync()
    box = maildir / "INBOX"
    local = _maildir_files(box)
    server = await _server_messages(imap, alice)
    assert sorted(local) == sorted(server), output
    by_id = {_message_id(raw): raw for raw in messages}
    for uid, path in local.items():
        data = path.read_bytes()
        assert _message_id(data) == server[uid][0]
        assert _without_tuid(data) == by_id[server[uid][0]].replace(b"\r\n", b"\n")
        assert ("F" in _maildir_flags(path.name)) == ("\\Flagged" in server[uid][1]), path.name

    # 2. Up: flags set locally (by renaming, as a Maildir reader does) and new
    # messages dropped into new/.
    uids = sorted(local)
    flagged_at_first = {uid for uid, (_, flags) in server.items() if "\\Flagged" in flags}
    assert len(flagged_at_first) == COUNT // 25
    seen_locally = uids[1:40:2]
    flagged_locally = uids[3:60:3]
    for uid in set(seen_locally) | set(flagged_locally):
        path = local[uid]
        flags = set(_maildir_flags(path.name))
        flags |= {"S"} if uid in seen_locally else set()
        flags |= {"F"} if uid in flagged_locally else set()
        base = path.name.split(":2,", 1)[0]
        path.rename(box / "cur" / f"{base}:2,{''.join(sorted(flags))}")
    new_local = _messages(7, 2)
    for n, raw in enumerate(new_local):
        (box / "new" / f"1700000000.local{n}.testhost").write_bytes(raw.replace(b"\r\n", b"\n"))
    output = await sync()
    server = await _server_messages(imap, alice)
    assert len(server) == COUNT + len(new_local), output
    for uid in uids:
        flags = server[uid][1]
        assert ("\\Seen" in flags) == (uid in seen_locally), (uid, flags)
        assert ("\\Flagged" in flags) == (uid in flagged_locally or uid in flagged_at_first), (uid, flags)
    uploaded = {mid for uid, (mid, _) in server.items() if uid not in local}
    assert uploaded == {_message_id(raw) for raw in new_local}
    # mbsync renamed the uploaded files to carry their new UIDs.
    local = _maildir_files(box)
    assert sorted(local) == sorted(server)

    # 3. Down again: flags changed in postern (as another client or the admin API
    # would) reach the file names.
    folder = await imap.folder_id(alice)
    store = imap.runtime.mailstore
    read_on_server = uids[100:130]
    flagged_on_server = uids[200:210]
    unseen_on_server = seen_locally[:5]
    await store.update_messages(alice, folder, [(u, u) for u in read_on_server], flags={"seen": True})
    await store.update_messages(alice, folder, [(u, u) for u in flagged_on_server], flags={"flagged": True})
    await store.update_messages(alice, folder, [(u, u) for u in unseen_on_server], flags={"seen": False})
    output = await sync()
    local = _maildir_files(box)
    server = await _server_messages(imap, alice)
    assert sorted(local) == sorted(server), output
    for uid, path in local.items():
        flags = _maildir_flags(path.name)
        assert ("S" in flags) == ("\\Seen" in server[uid][1]), (path.name, server[uid][1])
        assert ("F" in flags) == ("\\Flagged" in server[uid][1]), (path.name, server[uid][1])
    for uid in read_on_server:
        assert "S" in _maildir_flags(local[uid].name)
    for uid in flagged_on_server:
        assert "F" in _maildir_flags(local[uid].name)
    for uid in unseen_on_server:
        assert "S" not in _maildir_flags(local[uid].name)

    # 4. Nothing left to do: another sync changes nothing on either side.
    await sync()
    assert {u: p.name for u, p in _maildir_files(box).items()} == {u: p.name for u, p in local.items()}
    assert await _server_messages(imap, alice) == server


async def test_fetchmail_over_imap_fetches_and_deletes(imap: ImapDoor, alice: str, tmp_path: Path) -> None:
    messages = _messages(60, 3)
    for raw in messages:
        await imap.deliver(alice, raw)

    output, received = await fetchmail_without_keeping(tmp_path, proto="IMAP", port=imap.port, password=PASSWORD, timeout=RUN_TIMEOUT)
    assert "STARTTLS" in output  # fetchmail upgraded the connection (certificate not checked)
    assert len(received) == len(messages), output
    by_id = {_message_id(raw): raw.replace(b"\r\n", b"\n") for raw in messages}
    assert sorted(_message_id(r) for r in received) == sorted(by_id)
    for copy in received:
        # The original, below whatever trace headers fetchmail added on top.
        assert copy.replace(b"\r\n", b"\n").endswith(by_id[_message_id(copy)])
    # Deleted on the server: \Deleted, then expunged.
    assert await _server_messages(imap, alice) == {}
