"""STARTTLS on the MX door, connections per IP and the idle timeout."""

from __future__ import annotations

import asyncio
import smtplib
import socket
import ssl
import time
from typing import Any

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from postern.config import Settings
from postern.serve.runtime import Runtime
from tests.helpers import create_user, folder_id, make_message

HOST = "127.0.0.1"
TIMEOUT = 2.0  # the doors' idle timeout in this module


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """Read when the listeners start: two connections per IP and a short idle timeout."""
    return settings.model_copy(update={"smtp_connections_per_ip": 2, "smtp_timeout": TIMEOUT})


def unverified() -> ssl.SSLContext:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


async def inbox(client: httpx.AsyncClient, user_id: str) -> tuple[str, list[dict[str, Any]]]:
    folder = await folder_id(client, user_id)
    response = await client.get(f"/users/{user_id}/mailboxes/{folder}/messages")
    assert response.status_code == 200, response.text
    return folder, response.json()["results"]


def first_line(sock: socket.socket) -> bytes:
    data = b""
    while not data.endswith(b"\r\n"):
        chunk = sock.recv(1024)
        if not chunk:
            break
        data += chunk
    return data


def read_to_end(sock: socket.socket) -> bytes:
    data = b""
    while chunk := sock.recv(4096):
        data += chunk
    return data


# --- STARTTLS -----------------------------------------------------------------------


async def test_starttls(client: httpx.AsyncClient, runtime: Runtime, mail_doors: Any) -> None:
    uid = await create_user(client, "alice", address="alice@example.com")
    sent = make_message(subject="Over TLS")

    def send() -> dict[str, Any]:
        with smtplib.SMTP(HOST, mail_doors.smtp, local_hostname="client.example.org", timeout=15) as smtp:
            smtp.ehlo()
            out: dict[str, Any] = {"before": dict(smtp.esmtp_features)}
            out["starttls"] = smtp.starttls(context=unverified())
            out["cipher"] = smtp.sock.cipher()  # type: ignore[union-attr]
            out["cert"] = smtp.sock.getpeercert(binary_form=True)  # type: ignore[union-attr]
            smtp.ehlo()
            out["after"] = dict(smtp.esmtp_features)
            out["refused"] = smtp.sendmail("sender@example.org", ["alice@example.com"], sent)
            out["again"] = smtp.docmd("STARTTLS")  # only once per session
            return out

    out = await asyncio.to_thread(send)
    assert "starttls" in out["before"]
    assert out["starttls"][0] == 220
    assert out["cipher"] is not None
    assert "starttls" not in out["after"] and "pipelining" in out["after"] and "size" in out["after"]
    assert out["refused"] == {}
    assert out["again"][0] == 503 and out["again"][1].startswith(b"5.5.1 "), out["again"]

    # The self-signed certificate made at first start, for the server's name.
    cert_path = runtime.settings.data_dir / "tls" / "cert.pem"
    assert cert_path.exists() and (runtime.settings.data_dir / "tls" / "key.pem").exists()
    certificate = x509.load_pem_x509_certificate(cert_path.read_bytes())
    assert out["cert"] == certificate.public_bytes(Encoding.DER)
    names = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(x509.DNSName)
    assert names == ["mx.example.com"]

    folder, listed = await inbox(client, uid)
    assert [m["subject"] for m in listed] == ["Over TLS"]
    stored = (await client.get(f"/users/{uid}/mailboxes/{folder}/messages/{listed[0]['id']}/message.eml")).content
    assert stored.endswith(sent)
    assert b"(postern) with ESMTPS id " in stored[: len(stored) - len(sent)]
    events = (await client.get(f"/users/{uid}/mailboxes/{folder}/messages/{listed[0]['id']}/events")).json()["events"]
    (event,) = [e for e in events if e["action"] == "STORE"]
    assert event["transtype"] == "ESMTPS"
    assert event["source"] == "MX"


async def test_plaintext_pipelined_after_starttls_is_discarded(client: httpx.AsyncClient, mail_doors: Any) -> None:
    """Commands sent in the clear behind STARTTLS must not run inside TLS (RFC 3207
    section 4.2, CVE-2011-0411)."""
    uid = await create_user(client, "alice", address="alice@example.com")

    def talk() -> tuple[bytes, list[bytes]]:
        with socket.create_connection((HOST, mail_doors.smtp), timeout=15) as raw:
            reader = raw.makefile("rb")
            reader.readline()
            raw.sendall(b"EHLO client.example.org\r\n")
            while reader.readline()[3:4] == b"-":
                pass
            raw.sendall(b"STARTTLS\r\nMAIL FROM:<injected@example.org>\r\nRCPT TO:<alice@example.com>\r\n")
            ready = reader.readline()
            with unverified().wrap_socket(raw, server_hostname="mx.example.com") as tls:
                tls_reader = tls.makefile("rb")
                tls.sendall(b"EHLO client.example.org\r\n")
                replies = [tls_reader.readline()]
                while replies[-1][3:4] == b"-":
                    replies.append(tls_reader.readline())
                tls.sendall(b"DATA\r\n")
                replies.append(tls_reader.readline())
                tls.sendall(b"QUIT\r\n")
                replies.append(tls_reader.readline())
                return ready, replies

    ready, replies = await asyncio.to_thread(talk)
    assert ready.startswith(b"220 ")
    assert replies[0].startswith(b"250-mx.example.com"), replies  # the EHLO, nothing injected before it
    assert replies[-2].startswith(b"503 "), replies  # no MAIL and RCPT survived
    assert replies[-1].startswith(b"221")
    assert (await inbox(client, uid))[1] == []


async def test_no_starttls_on_lmtp(mail_doors: Any) -> None:
    def features() -> dict[str, str]:
        with smtplib.LMTP(HOST, mail_doors.lmtp, local_hostname="client.example.org", timeout=15) as lmtp:
            lmtp.ehlo_or_helo_if_needed()
            return dict(lmtp.esmtp_features)

    # LMTP is for a local MTA on a trusted link (RFC 2033): no STARTTLS there.
    assert "starttls" not in await asyncio.to_thread(features)


# --- connections per IP ---------------------------------------------------------------


async def test_connections_per_ip(mail_doors: Any) -> None:
    def scenario() -> dict[str, Any]:
        out: dict[str, Any] = {}
        first = socket.create_connection((HOST, mail_doors.smtp), timeout=15)
        second = socket.create_connection((HOST, mail_doors.smtp), timeout=15)
        out["first"], out["second"] = first_line(first), first_line(second)
        third = socket.create_connection((HOST, mail_doors.smtp), timeout=15)
        out["third"] = read_to_end(third)  # refused, then closed by the server
        third.close()
        # The two open sessions still work.
        second.sendall(b"NOOP\r\n")
        out["noop"] = first_line(second)
        # Closing one lets a new one in (once the server has seen the close).
        first.close()
        deadline = time.monotonic() + 10
        while True:
            fourth = socket.create_connection((HOST, mail_doors.smtp), timeout=15)
            line = first_line(fourth)
            if line.startswith(b"220") or time.monotonic() > deadline:
                break
            fourth.close()
            time.sleep(0.05)
        out["fourth"] = line
        # ... and the limit still holds with the new one.
        fifth = socket.create_connection((HOST, mail_doors.smtp), timeout=15)
        out["fifth"] = read_to_end(fifth)
        fifth.close()
        for sock in (second, fourth):
            sock.sendall(b"QUIT\r\n")
            out.setdefault("quit", []).append(first_line(sock))
            sock.close()
        return out

    out = await asyncio.to_thread(scenario)
    assert out["first"].startswith(b"220 ") and out["second"].startswith(b"220 ")
    assert out["third"].startswith(b"421 4.7.0 "), out["third"]
    assert out["third"].count(b"\r\n") == 1  # nothing else: no greeting
    assert out["noop"].startswith(b"250")
    assert out["fourth"].startswith(b"220 "), out["fourth"]
    assert out["fifth"].startswith(b"421 4.7.0 "), out["fifth"]
    assert all(line.startswith(b"221") for line in out["quit"])


# --- timeouts ---------------------------------------------------------------------------


async def test_idle_connection_closed_with_421(mail_doors: Any) -> None:
    def idle(after_ehlo: bool) -> tuple[bytes, bytes]:
        with socket.create_connection((HOST, mail_doors.smtp), timeout=TIMEOUT * 10) as sock:
            greeting = first_line(sock)
            if after_ehlo:
                sock.sendall(b"EHLO client.example.org\r\nMAIL FROM:<sender@example.org>\r\n")
                reply = b""
                while b"\r\n250 2.1.0" not in reply:
                    reply += sock.recv(4096)
            return greeting, read_to_end(sock)  # waits for the server to give up

    (greeting, silent), (_, in_transaction) = await asyncio.gather(asyncio.to_thread(idle, False), asyncio.to_thread(idle, True))
    assert greeting.startswith(b"220 ")
    assert silent.startswith(b"421 4.4.2 "), silent
    assert in_transaction.startswith(b"421 4.4.2 "), in_transaction


async def test_slow_data_is_not_cut_off(client: httpx.AsyncClient, mail_doors: Any) -> None:
    """The timeout is for silence: data that keeps coming, slower than the timeout in
    total, is received."""
    uid = await create_user(client, "alice", address="alice@example.com")
    lines = [b"Subject: slowly\r\n", b"\r\n"] + [b"line %d\r\n" % n for n in range(6)]

    def send() -> list[bytes]:
        with socket.create_connection((HOST, mail_doors.smtp), timeout=15) as sock:
            reader = sock.makefile("rb")
            replies = [reader.readline()]
            sock.sendall(b"HELO client.example.org\r\n")
            replies.append(reader.readline())
            for command in (b"MAIL FROM:<sender@example.org>", b"RCPT TO:<alice@example.com>", b"DATA"):
                sock.sendall(command + b"\r\n")
                replies.append(reader.readline())
            for line in lines:  # TIMEOUT * 1.5 in all, TIMEOUT / 4 at most between two
                sock.sendall(line)
                time.sleep(TIMEOUT * 1.5 / len(lines))
            sock.sendall(b".\r\n")
            replies.append(reader.readline())
            return replies

    replies = await asyncio.to_thread(send)
    assert replies[-2].startswith(b"354")
    assert replies[-1].startswith(b"250 2.0.0 "), replies
    folder, listed = await inbox(client, uid)
    stored = (await client.get(f"/users/{uid}/mailboxes/{folder}/messages/{listed[0]['id']}/message.eml")).content
    assert stored.endswith(b"".join(lines))


async def test_slow_storage_does_not_time_the_client_out(
    client: httpx.AsyncClient, runtime: Runtime, mail_doors: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """While postern stores a message the client is waiting for the reply, not idle."""
    uid = await create_user(client, "alice", address="alice@example.com")
    deliver = runtime.inbound.deliver

    async def slow_deliver(envelope: Any) -> Any:
        await asyncio.sleep(TIMEOUT * 1.5)
        return await deliver(envelope)

    monkeypatch.setattr(runtime.inbound, "deliver", slow_deliver)

    def send() -> tuple[Any, Any]:
        with smtplib.SMTP(HOST, mail_doors.smtp, local_hostname="client.example.org", timeout=15) as smtp:
            smtp.ehlo()
            smtp.mail("sender@example.org")
            smtp.rcpt("alice@example.com")
            return smtp.data(make_message(subject="Stored slowly")), smtp.noop()

    data, noop = await asyncio.to_thread(send)
    assert data[0] == 250, data
    assert noop[0] == 250
    _, listed = await inbox(client, uid)
    assert [m["subject"] for m in listed] == ["Stored slowly"]
