"""Greeting, CAPABILITY, LOGIN, AUTHENTICATE PLAIN, STARTTLS, LOGOUT, ID, state."""

from __future__ import annotations

import base64
import ssl

from postern.events import UserLoggedOut

from .conftest import PASSWORD, ImapDoor, RawClient, in_thread, status_of


async def test_greeting_and_capability(imap: ImapDoor) -> None:
    client = await imap.client(login=None)
    assert client.greeting.startswith("* OK [CAPABILITY IMAP4rev1")
    lines = await client.ok("CAPABILITY")
    caps = lines[0].split()
    assert "IMAP4rev1" in caps and "STARTTLS" in caps and "AUTH=PLAIN" in caps
    assert "LOGINDISABLED" not in caps  # loopback
    await client.close()


async def test_login_and_capabilities_after(imap: ImapDoor, alice: str) -> None:
    client = await imap.client(login=None)
    lines, tagged = await client.command(f'LOGIN alice "{PASSWORD}"')
    assert status_of(tagged) == "OK" and "[CAPABILITY" in tagged
    caps = (await client.ok("CAPABILITY"))[0].split()
    for cap in ("UIDPLUS", "MOVE", "IDLE", "CONDSTORE", "QRESYNC", "SPECIAL-USE", "NAMESPACE", "ESEARCH", "SORT", "THREAD=REFERENCES"):
        assert cap in caps
    await client.close()


async def test_wrong_password(imap: ImapDoor, alice: str) -> None:
    client = await imap.client(login=None)
    _, tagged = await client.command('LOGIN alice "wrong"')
    assert tagged.split()[1:3] == ["NO", "[AUTHENTICATIONFAILED]"]
    _, tagged = await client.command('LOGIN nobody "wrong"')
    assert tagged.split()[1:3] == ["NO", "[AUTHENTICATIONFAILED]"]
    await client.close()


async def test_imaplib_login_logout(imap: ImapDoor, alice: str) -> None:
    def run() -> tuple[str, str]:
        m = imap.imaplib()
        typ, _ = m.login("alice", PASSWORD)
        typ2, _ = m.logout()
        return typ, typ2

    assert await in_thread(run) == ("OK", "BYE")


async def test_authenticate_plain_with_and_without_initial_response(imap: ImapDoor, alice: str) -> None:
    token = base64.b64encode(f"\0alice\0{PASSWORD}".encode()).decode()
    client = await imap.client(login=None)
    _, tagged = await client.command(f"AUTHENTICATE PLAIN {token}")
    assert status_of(tagged) == "OK"
    await client.close()

    client = await imap.client(login=None)
    await client.send("x1 AUTHENTICATE PLAIN\r\n")
    assert (await client.line()).startswith("+")
    await client.send(token + "\r\n")
    _, tagged = await client.until_tag("x1")
    assert status_of(tagged) == "OK"
    await client.ok("NOOP")
    await client.close()

    client = await imap.client(login=None)
    await client.send("x1 AUTHENTICATE PLAIN\r\n")
    assert (await client.line()).startswith("+")
    await client.send("*\r\n")
    _, tagged = await client.until_tag("x1")
    assert status_of(tagged) == "BAD"
    await client.close()


async def test_imaplib_authenticate(imap: ImapDoor, alice: str) -> None:
    def run() -> str:
        m = imap.imaplib()
        typ, _ = m.authenticate("PLAIN", lambda _: f"\0alice\0{PASSWORD}".encode())
        m.logout()
        return typ

    assert await in_thread(run) == "OK"


async def test_starttls_then_login(imap: ImapDoor, alice: str) -> None:
    def run() -> tuple[str, str]:
        m = imap.imaplib()
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        typ, _ = m.starttls(context)
        caps = m.capabilities
        typ2, _ = m.login("alice", PASSWORD)
        m.logout()
        return typ, typ2, caps

    typ, typ2, caps = await in_thread(run)
    assert (typ, typ2) == ("OK", "OK")
    assert "STARTTLS" not in caps


async def test_implicit_tls(imap: ImapDoor, alice: str) -> None:
    client = await RawClient.connect(imap.tls_port, tls=True)
    assert client.greeting.startswith("* OK")
    await client.ok(f'LOGIN alice "{PASSWORD}"')
    await client.close()


async def test_login_disabled_without_tls_off_loopback(imap: ImapDoor, alice: str) -> None:
    client = await imap.client(login=None)
    # Pretend the peer is remote: plaintext logins are refused.
    session_peers = []
    imap.services.preauth_timeout = 60
    await client.close()
    from postern.protocols.imap.session import Session

    session = Session(imap.services, lambda data: session_peers.append(data), peer="192.0.2.1", loopback=False)
    assert "LOGINDISABLED" in session.capabilities()
    from postern.protocols.imap import commands as c
    from postern.protocols.imap.dispatch import dispatch

    await dispatch(session, c.Login("t1", b"alice", PASSWORD.encode()))
    assert b"t1 NO [PRIVACYREQUIRED]" in b"".join(session_peers)
    assert session.state == "not_authenticated"


async def test_commands_in_wrong_state(imap: ImapDoor, alice: str) -> None:
    client = await imap.client(login=None)
    _, tagged = await client.command("SELECT INBOX")
    assert status_of(tagged) == "BAD"
    _, tagged = await client.command("FETCH 1 FLAGS")
    assert status_of(tagged) == "BAD"
    await client.ok(f'LOGIN alice "{PASSWORD}"')
    _, tagged = await client.command(f'LOGIN alice "{PASSWORD}"')
    assert status_of(tagged) == "BAD"
    _, tagged = await client.command("FETCH 1 FLAGS")
    assert status_of(tagged) == "BAD"
    await client.close()


async def test_id_and_logout(imap: ImapDoor, alice: str) -> None:
    client = await imap.client()
    lines = await client.ok('ID ("name" "test")')
    assert lines[0].startswith('* ID ("name" "postern"')
    lines, tagged = await client.command("LOGOUT")
    assert lines[0].startswith("* BYE") and status_of(tagged) == "OK"
    await client.close()


async def test_logged_out_event_ends_session(imap: ImapDoor, alice: str) -> None:
    client = await imap.client()
    await client.ok("SELECT INBOX")
    imap.runtime.bus.publish([UserLoggedOut(alice, "Password changed")])
    line = await client.line()
    assert line.startswith("* BYE") and "Password changed" in line
    await client.close()


async def test_application_passwords(imap: ImapDoor, alice: str, client) -> None:  # type: ignore[no-untyped-def]
    response = await client.post(f"/users/{alice}/asps", json={"description": "mail app", "scopes": ["imap"]})
    assert response.status_code == 200, response.text
    imap_password = response.json()["password"]
    response = await client.post(f"/users/{alice}/asps", json={"description": "pop only", "scopes": ["pop3"]})
    pop_password = response.json()["password"]
    session = await imap.client(login=None)
    _, tagged = await session.command(f'LOGIN alice "{pop_password}"')
    assert tagged.split()[1:3] == ["NO", "[AUTHENTICATIONFAILED]"]
    _, tagged = await session.command(f'LOGIN alice "{imap_password}"')
    assert status_of(tagged) == "OK"
    await session.close()
    response = await client.get(f"/users/{alice}/authlog")
    assert response.status_code == 200
    assert any(entry.get("protocol") == "IMAP" for entry in response.json()["results"])
