"""The POP3 door over real sockets, with Python's poplib and raw sockets."""

from __future__ import annotations

import asyncio
import base64
import poplib
import ssl
from typing import Any

import httpx
import pytest

from postern.accounts.service import NewUser
from postern.mailstore.pop3_view import Pop3View
from postern.protocols.pop3.server import Pop3Server, authenticator
from postern.serve.server import bound_port
from tests.helpers import make_message
from tests.protocols.pop3.conftest import PASSWORD, Pop3, Raw, client_tls

pytestmark = pytest.mark.asyncio


def _joined(lines: list[bytes]) -> bytes:
    """What a POP3 client rebuilds from poplib's lines (dot-stuffing removed)."""
    return b"".join(line + b"\r\n" for line in lines)


def _crlf(raw: bytes) -> bytes:
    out = raw.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
    return out if out.endswith(b"\r\n") else out + b"\r\n"


# CAPA and STLS -----------------------------------------------------------------------


async def test_greeting_and_capa_on_loopback(pop3: Pop3) -> None:
    def run() -> tuple[bytes, dict[str, list[str]]]:
        client = pop3.client()
        try:
            return client.getwelcome(), client.capa()
        finally:
            client.quit()

    welcome, capa = await asyncio.to_thread(run)
    assert welcome.startswith(b"+OK")
    for name in ("TOP", "UIDL", "USER", "RESP-CODES", "AUTH-RESP-CODE", "PIPELINING", "STLS", "IMPLEMENTATION"):
        assert name in capa, name
    assert capa["SASL"] == ["PLAIN"]
    assert capa["EXPIRE"] == ["NEVER"]
    assert "LOGIN-DELAY" not in capa


async def _strict_server(pop3: Pop3) -> int:
    """A listener that treats loopback like any other network: no plaintext logins
    before STLS."""
    runtime = pop3.runtime
    server = Pop3Server(
        Pop3View(runtime.mailstore),
        authenticator(runtime.accounts),
        runtime.bus,
        tls_context=_server_tls(pop3),
        plaintext_on_loopback=False,
    )
    listener = await server.listen("127.0.0.1", 0)
    pop3.extra.append(listener)
    return bound_port(listener)


def _server_tls(pop3: Pop3) -> ssl.SSLContext:
    from postern.serve.tls import ensure_self_signed, server_context

    settings = pop3.runtime.settings
    return server_context(*ensure_self_signed(settings.data_dir / "tls", settings.hostname))


async def test_capa_before_and_after_stls(pop3: Pop3) -> None:
    port = await _strict_server(pop3)

    def run() -> None:
        client = poplib.POP3("127.0.0.1", port, timeout=30)
        before = client.capa()
        assert "USER" not in before and "SASL" not in before
        assert "STLS" in before
        # Plaintext logins are refused before STLS.
        with pytest.raises(poplib.error_proto, match=r"\[AUTH\].*STLS"):
            client.user("alice")
        with pytest.raises(poplib.error_proto, match=r"\[AUTH\].*STLS"):
            client._shortcmd("AUTH PLAIN " + base64.b64encode(b"\0alice\0" + PASSWORD.encode()).decode())
        client.stls(client_tls())
        after = client.capa()
        assert "USER" in after and after["SASL"] == ["PLAIN"]
        assert "STLS" not in after
        with pytest.raises(poplib.error_proto, match="TLS"):
            client._shortcmd("STLS")
        client.user("alice")
        assert client.pass_(PASSWORD).startswith(b"+OK")
        assert client.stat() == (0, 0)
        client.quit()

    await asyncio.to_thread(run)


async def test_stls_discards_commands_sent_in_the_clear(pop3: Pop3) -> None:
    """Anything pipelined after STLS, before the handshake, is dropped (RFC 2595)."""
    port = await _strict_server(pop3)

    def run() -> None:
        with Raw(port) as raw:
            raw.line()
            raw.send(b"STLS\r\nUSER alice\r\nPASS " + PASSWORD.encode() + b"\r\n")
            assert raw.line().startswith(b"+OK")
            tls = client_tls().wrap_socket(raw.sock, server_hostname="localhost")
            tls.sendall(b"STAT\r\n")
            answer = tls.recv(1000)
            assert answer.startswith(b"-ERR"), answer  # not logged in: the injected USER/PASS were dropped
            tls.sendall(b"QUIT\r\n")
            tls.close()

    await asyncio.to_thread(run)


async def test_implicit_tls(pop3: Pop3) -> None:
    await pop3.append(make_message("over TLS"))

    def run() -> None:
        client = poplib.POP3_SSL("127.0.0.1", pop3.tls_port, context=client_tls(), timeout=30)
        capa = client.capa()
        assert "STLS" not in capa and "USER" in capa
        client.user("alice")
        client.pass_(PASSWORD)
        assert client.stat()[0] == 1
        _, lines, _ = client.retr(1)
        assert b"Subject: over TLS" in lines
        client.quit()

    await asyncio.to_thread(run)


# Logins --------------------------------------------------------------------------------


async def test_user_pass_with_username_and_address(pop3: Pop3) -> None:
    def run() -> None:
        for login in ("alice", "alice@example.com", "ALICE@Example.com"):
            client = pop3.client()
            client.user(login)
            assert client.pass_(PASSWORD).startswith(b"+OK")
            client.quit()

    await asyncio.to_thread(run)


async def test_bad_password(pop3: Pop3) -> None:
    def run() -> None:
        client = pop3.client()
        client.user("alice")
        with pytest.raises(poplib.error_proto, match=r"^b'-ERR \[AUTH\]"):
            client.pass_("wrong")
        client.user("nobody")
        with pytest.raises(poplib.error_proto, match=r"\[AUTH\]"):
            client.pass_("wrong")
        # PASS needs a USER first; nothing else works before a login.
        with pytest.raises(poplib.error_proto):
            client.pass_(PASSWORD)
        with pytest.raises(poplib.error_proto):
            client.stat()
        client.user("alice")
        assert client.pass_(PASSWORD).startswith(b"+OK")
        client.quit()

    await asyncio.to_thread(run)


async def test_auth_plain_with_initial_response_and_continuation(pop3: Pop3) -> None:
    token = base64.b64encode(b"\0alice\0" + PASSWORD.encode()).decode()

    def run() -> None:
        client = pop3.client()
        assert client._shortcmd("AUTH PLAIN " + token).startswith(b"+OK")
        assert client.stat() == (0, 0)
        client.quit()

        client = pop3.client()
        assert client._shortcmd("AUTH PLAIN").startswith(b"+")
        assert client._shortcmd(token).startswith(b"+OK")
        client.quit()

        client = pop3.client()
        assert client._longcmd("AUTH")[1] == [b"PLAIN"]
        with pytest.raises(poplib.error_proto, match=r"\[AUTH\]"):
            client._shortcmd("AUTH PLAIN " + base64.b64encode(b"\0alice\0wrong").decode())
        with pytest.raises(poplib.error_proto, match=r"\[AUTH\]"):
            client._shortcmd("AUTH PLAIN " + base64.b64encode(b"someone\0alice\0" + PASSWORD.encode()).decode())
        with pytest.raises(poplib.error_proto, match=r"\[AUTH\]"):
            client._shortcmd("AUTH PLAIN =")
        with pytest.raises(poplib.error_proto):
            client._shortcmd("AUTH CRAM-MD5")
        client._shortcmd("AUTH PLAIN")
        with pytest.raises(poplib.error_proto, match="cancelled"):
            client._shortcmd("*")
        client._shortcmd("AUTH PLAIN")
        with pytest.raises(poplib.error_proto, match="base64"):
            client._shortcmd("not base64 at all!")
        # The session goes on as before.
        assert client._shortcmd("AUTH PLAIN " + base64.b64encode(b"alice\0alice\0" + PASSWORD.encode()).decode()).startswith(b"+OK")
        client.quit()

    await asyncio.to_thread(run)


async def test_application_password_with_the_pop3_scope(pop3: Pop3, client: httpx.AsyncClient) -> None:
    pop3_only = (await client.post(f"/users/{pop3.user_id}/asps", json={"description": "mail", "scopes": ["pop3"]})).json()["password"]
    imap_only = (await client.post(f"/users/{pop3.user_id}/asps", json={"description": "imap", "scopes": ["imap"]})).json()["password"]

    def run() -> None:
        mail = pop3.client()
        mail.user("alice")
        assert mail.pass_(pop3_only).startswith(b"+OK")
        mail.quit()
        other = pop3.client()
        other.user("alice")
        with pytest.raises(poplib.error_proto, match=r"\[AUTH\]"):
            other.pass_(imap_only)
        other.quit()

    await asyncio.to_thread(run)


async def test_disabled_account(pop3: Pop3, client: httpx.AsyncClient) -> None:
    response = await client.put(f"/users/{pop3.user_id}", json={"disabled": True})
    assert response.status_code == 200, response.text

    def run() -> None:
        mail = pop3.client()
        mail.user("alice")
        with pytest.raises(poplib.error_proto, match=r"\[AUTH\].*disabled"):
            mail.pass_(PASSWORD)
        mail.quit()

    await asyncio.to_thread(run)


# The maildrop ------------------------------------------------------------------------------

MESSAGES = [
    make_message("plain", "Hi there.\r\n"),
    make_message("dots", ".starts with a dot\r\n..two dots\r\n.\r\nmiddle\r\n.\r\n"),
    b"Subject: bare LF\nFrom: a@example.org\n\nline one\n.dot line\nline three\n",
    b"Subject: no final newline\r\n\r\nends here",
    b"Subject: mixed\r\nX: y\n\r\nbody\r\n\rcr\nlf\r\n",
]


async def test_stat_list_uidl_retr_top_are_exact(pop3: Pop3) -> None:
    uids = [await pop3.append(raw) for raw in MESSAGES]
    inbox = await pop3.runtime.mailstore.folder_by_path(pop3.user_id, "INBOX")

    def run() -> None:
        client = pop3.logged_in()
        count, total = client.stat()
        _, listing, _ = client.list()
        sizes = [int(line.split()[1]) for line in listing]
        assert count == len(MESSAGES) and total == sum(sizes)
        _, uidl, _ = client.uidl()
        unique = [line.split()[1].decode() for line in uidl]
        assert unique == [f"{inbox.uidvalidity}.{uid}" for uid in uids]
        assert len(set(unique)) == len(unique)
        for number, raw in enumerate(MESSAGES, 1):
            response, lines, octets = client.retr(number)
            body = _joined(lines)
            assert body == _crlf(raw)
            assert len(body) == sizes[number - 1] == octets
            assert response == f"+OK {sizes[number - 1]} octets".encode()
            assert client.list(number) == f"+OK {number} {sizes[number - 1]}".encode()
            assert client.uidl(number) == f"+OK {number} {unique[number - 1]}".encode()
            # TOP n 0: the header and the blank line; TOP n 1: and one body line.
            header, _, rest = _crlf(raw).partition(b"\r\n\r\n")
            _, top, _ = client.top(number, 0)
            assert _joined(top) == header + b"\r\n\r\n"
            _, top, _ = client.top(number, 1)
            assert _joined(top) == header + b"\r\n\r\n" + rest.split(b"\r\n")[0] + b"\r\n"
            _, top, _ = client.top(number, 1000)
            assert _joined(top) == _crlf(raw)
        with pytest.raises(poplib.error_proto):
            client.retr(len(MESSAGES) + 1)
        with pytest.raises(poplib.error_proto):
            client.list(99)
        client.quit()

    await asyncio.to_thread(run)


async def test_dot_stuffing_on_the_wire(pop3: Pop3) -> None:
    await pop3.append(MESSAGES[1])

    def run() -> None:
        with Raw(pop3.port) as raw:
            raw.line()
            raw.command(b"USER alice")
            assert raw.command(b"PASS " + PASSWORD.encode()).startswith(b"+OK")
            status = raw.command(b"RETR 1")
            size = int(status.split()[1])
            lines = raw.multiline()
            assert b"..starts with a dot\r\n" in lines
            assert b"...two dots\r\n" in lines
            assert lines.count(b"..\r\n") == 2
            unstuffed = b"".join(line[1:] if line.startswith(b".") else line for line in lines)
            assert len(unstuffed) == size
            raw.command(b"QUIT")

    await asyncio.to_thread(run)


async def test_large_message_is_streamed_exactly(pop3: Pop3) -> None:
    body = b"".join(b"." * (i % 7) + b"line %d of a large message\n" % i for i in range(60000))
    raw = b"Subject: large\n\n" + body
    await pop3.append(raw)

    def run() -> None:
        client = pop3.logged_in()
        _, listing, _ = client.list()
        _, lines, octets = client.retr(1)
        assert _joined(lines) == _crlf(raw)
        assert octets == int(listing[0].split()[1]) == len(_crlf(raw))
        client.quit()

    await asyncio.to_thread(run)


async def test_snapshot_is_stable_during_a_session(pop3: Pop3) -> None:
    await pop3.append(make_message("first"))
    client = await asyncio.to_thread(pop3.logged_in)
    before = await asyncio.to_thread(client.list)
    await pop3.append(make_message("arrived later"))
    assert await asyncio.to_thread(client.list) == before
    assert (await asyncio.to_thread(client.stat))[0] == 1
    with pytest.raises(poplib.error_proto):
        await asyncio.to_thread(client.retr, 2)
    await asyncio.to_thread(client.quit)
    client = await asyncio.to_thread(pop3.logged_in)
    assert (await asyncio.to_thread(client.stat))[0] == 2
    await asyncio.to_thread(client.quit)


# DELE, RSET, QUIT ------------------------------------------------------------------------------


async def test_dele_then_rset_keeps_everything(pop3: Pop3) -> None:
    for index in range(3):
        await pop3.append(make_message(f"message {index}"))

    def run() -> None:
        client = pop3.logged_in()
        _, total = client.stat()
        client.dele(1)
        client.dele(3)
        assert client.stat()[0] == 1
        assert [line.split()[0] for line in client.list()[1]] == [b"2"]
        with pytest.raises(poplib.error_proto, match="deleted"):
            client.retr(1)
        with pytest.raises(poplib.error_proto, match="deleted"):
            client.dele(1)
        client.rset()
        assert client.stat() == (3, total)
        client.quit()

    await asyncio.to_thread(run)
    assert await pop3.count("INBOX") == 3
    assert await pop3.count("Trash") == 0


async def test_dele_and_quit_moves_to_trash(pop3: Pop3, client: httpx.AsyncClient) -> None:
    raws = [make_message(f"message {index}") for index in range(4)]
    for raw in raws:
        await pop3.append(raw)

    def run() -> bytes:
        mail = pop3.logged_in()
        mail.retr(2)
        mail.dele(2)
        mail.dele(4)
        return mail.quit()

    farewell = await asyncio.to_thread(run)
    assert farewell.startswith(b"+OK") and b"2 messages moved to Trash" in farewell
    assert await pop3.count("INBOX") == 2
    assert sorted(await pop3.raw_messages("Trash")) == sorted([raws[1], raws[3]])
    assert sorted(await pop3.raw_messages("INBOX")) == sorted([raws[0], raws[2]])
    # Through the admin API too: Trash holds them, the retrieved one is seen.
    mailboxes = (await client.get(f"/users/{pop3.user_id}/mailboxes")).json()["results"]
    trash = next(m for m in mailboxes if m["path"] == "Trash")
    listing = (await client.get(f"/users/{pop3.user_id}/mailboxes/{trash['id']}/messages")).json()["results"]
    assert sorted(m["subject"] for m in listing) == ["message 1", "message 3"]
    assert {m["subject"]: m["seen"] for m in listing} == {"message 1": True, "message 3": False}


async def test_dropped_connection_changes_nothing(pop3: Pop3) -> None:
    for index in range(2):
        await pop3.append(make_message(f"message {index}"))

    def run() -> None:
        client = pop3.logged_in()
        client.retr(1)
        client.dele(1)
        client.dele(2)
        client.sock.close()  # no QUIT

    await asyncio.to_thread(run)
    # The server notices the end of the connection; then nothing has moved.
    for _ in range(100):
        if not pop3.runtime.bus._subscribers.get(pop3.user_id):
            break
        await asyncio.sleep(0.05)
    assert await pop3.count("INBOX") == 2
    assert await pop3.count("Trash") == 0
    inbox = await pop3.runtime.mailstore.folder_by_path(pop3.user_id, "INBOX")
    assert inbox.unseen_count == 2


async def test_messages_removed_meanwhile(pop3: Pop3) -> None:
    """Another session (IMAP, the API) removes a message: this session says so, and
    QUIT moves what is left."""
    first = await pop3.append(make_message("one"))
    await pop3.append(make_message("two"))
    client = await asyncio.to_thread(pop3.logged_in)
    await pop3.runtime.mailstore.delete_messages(pop3.user_id, await pop3.inbox_id(), [first])

    def run() -> bytes:
        with pytest.raises(poplib.error_proto, match="removed"):
            client.retr(1)
        client.dele(1)
        client.dele(2)
        return client.quit()

    assert b"1 messages moved" in await asyncio.to_thread(run)
    assert await pop3.count("INBOX") == 0
    assert await pop3.count("Trash") == 1


async def test_logout_ends_the_session_without_update(pop3: Pop3) -> None:
    await pop3.append(make_message("kept"))
    client = await asyncio.to_thread(pop3.logged_in)
    await asyncio.to_thread(client.dele, 1)
    for _ in range(100):  # the session subscribes once logged in
        if pop3.runtime.bus._subscribers.get(pop3.user_id):
            break
        await asyncio.sleep(0.05)
    await pop3.runtime.accounts.logout(pop3.user_id, "test")

    def run() -> None:
        with pytest.raises((poplib.error_proto, OSError, EOFError)):
            client.quit()

    await asyncio.to_thread(run)
    assert await pop3.count("INBOX") == 1
    assert await pop3.count("Trash") == 0


# Robustness ------------------------------------------------------------------------------------


async def test_pipelining(pop3: Pop3) -> None:
    await pop3.append(MESSAGES[0])
    await pop3.append(MESSAGES[2])

    def run() -> None:
        with Raw(pop3.port) as raw:
            raw.line()
            raw.send(
                b"CAPA\r\nUSER alice\r\nPASS " + PASSWORD.encode() + b"\r\nSTAT\r\nLIST\r\nUIDL\r\n"
                b"RETR 1\r\nTOP 2 0\r\nDELE 1\r\nNOOP\r\nRSET\r\nQUIT\r\n"
            )
            assert raw.line().startswith(b"+OK")
            assert b"PIPELINING\r\n" in raw.multiline()
            assert raw.line().startswith(b"+OK")  # USER
            assert raw.line().startswith(b"+OK")  # PASS
            assert raw.line().startswith(b"+OK 2 ")  # STAT
            assert raw.line().startswith(b"+OK") and len(raw.multiline()) == 2  # LIST
            assert raw.line().startswith(b"+OK") and len(raw.multiline()) == 2  # UIDL
            status = raw.line()
            assert status.startswith(b"+OK")
            assert len(b"".join(raw.multiline())) == int(status.split()[1])  # RETR
            assert raw.line().startswith(b"+OK") and raw.multiline()[-1] == b"\r\n"  # TOP
            assert raw.line().startswith(b"+OK")  # DELE
            assert raw.line() == b"+OK\r\n"  # NOOP
            assert raw.line().startswith(b"+OK")  # RSET
            assert raw.line().startswith(b"+OK")  # QUIT
            assert raw.line() == b""

    await asyncio.to_thread(run)
    assert await pop3.count("INBOX") == 2


async def test_garbage_and_long_lines(pop3: Pop3) -> None:
    def run() -> None:
        with Raw(pop3.port) as raw:
            raw.line()
            for junk in (b"GET / HTTP/1.1", b"\x00\xff\xfe", b"LIST", b"RETR 1", b"TOP x y", b"", b"USER a b c", b"APOP x y"):
                assert raw.command(junk).startswith(b"-ERR"), junk
            # A line far over the limit is one error, then the session goes on.
            assert raw.command(b"NOOP " + b"x" * 100_000).startswith(b"-ERR")
            assert raw.command(b"USER " + b"y" * 5000).startswith(b"-ERR")
            # Lines up to the tolerated length work, whatever RFC 2449 says.
            assert raw.command(b"USER alice" + b" " * 400).startswith(b"+OK")
            assert raw.command(b"PASS " + PASSWORD.encode()).startswith(b"+OK")
            assert raw.command(b"STAT") == b"+OK 0 0\r\n"
            assert raw.command(b"LIST 1").startswith(b"-ERR")
            assert raw.command(b"STLS").startswith(b"-ERR")  # not after login
            assert raw.command(b"QUIT").startswith(b"+OK")

        with Raw(pop3.port) as raw:  # bare LF line endings are accepted
            raw.line()
            raw.send(b"CAPA\n")
            assert raw.line().startswith(b"+OK")
            raw.multiline()
            raw.send(b"QUIT\n")
            assert raw.line().startswith(b"+OK")

        with Raw(pop3.port) as raw:  # a client that only sends garbage is shown the door
            raw.line()
            raw.send(b"junk\r\n" * 50)
            answers = []
            while line := raw.line():
                answers.append(line)
            assert all(a.startswith(b"-ERR") for a in answers) and len(answers) < 50

    await asyncio.to_thread(run)


async def test_idle_timeout(runtime: Any) -> None:
    await runtime.accounts.create_user(NewUser("bob", PASSWORD))
    server = Pop3Server(Pop3View(runtime.mailstore), authenticator(runtime.accounts), runtime.bus, tls_context=None, timeout=0.3)
    listener = await server.listen("127.0.0.1", 0)
    try:

        def run() -> None:
            with Raw(bound_port(listener)) as raw:
                assert raw.line().startswith(b"+OK")
                raw.command(b"USER bob")
                assert raw.command(b"PASS " + PASSWORD.encode()).startswith(b"+OK")
                # Then silence: the server closes the connection without a word.
                assert raw.line() == b""

        await asyncio.to_thread(run)
    finally:
        listener.close()
        await listener.wait_closed()


async def test_connections_per_ip(runtime: Any) -> None:
    server = Pop3Server(Pop3View(runtime.mailstore), authenticator(runtime.accounts), runtime.bus, tls_context=None, connections_per_ip=2)
    listener = await server.listen("127.0.0.1", 0)
    port = bound_port(listener)
    try:

        def run() -> None:
            first, second = Raw(port), Raw(port)
            assert first.line().startswith(b"+OK") and second.line().startswith(b"+OK")
            with Raw(port) as third:
                assert third.line().startswith(b"-ERR [SYS/TEMP]")
                assert third.line() == b""
            first.command(b"QUIT")
            first.close()
            for _ in range(100):  # the server counts the closed one out
                with Raw(port) as again:
                    if again.line().startswith(b"+OK"):
                        again.command(b"QUIT")
                        break
            else:
                raise AssertionError("a freed slot was not reused")
            second.close()

        await asyncio.to_thread(run)
    finally:
        listener.close()
        await listener.wait_closed()
