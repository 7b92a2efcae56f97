"""A Matrix homeserver on loopback, over TLS with a test CA: it answers
``/.well-known/matrix/server`` and ``/_matrix/federation/v1/openid/userinfo``."""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import json
import ssl
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID


def make_ca_and_leaf(folder: Path, names: list[str]) -> tuple[Path, Path, Path]:
    """(CA certificate, leaf certificate, leaf key) files; the leaf is valid for
    ``names`` (hostnames or IP addresses)."""
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "postern test CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False),
            critical=True,
        )
        .add_extension(
            x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    alt: list[x509.GeneralName] = []
    for name in names:
        try:
            alt.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            alt.append(x509.DNSName(name))
    leaf = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName(alt), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
        .add_extension(
            x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    ca_file, cert_file, key_file = (
        folder / "ca.pem",
        folder / "leaf.pem",
        folder / "leaf.key",
    )
    ca_file.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    cert_file.write_bytes(leaf.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return ca_file, cert_file, key_file


@dataclass
class FakeHomeserver:
    cert_file: Path
    key_file: Path
    # token -> user id the server vouches for
    tokens: dict[str, str] = field(default_factory=dict)
    # Host header -> the m.server it delegates to
    well_known: dict[str, str] = field(default_factory=dict)
    # Host header -> where its .well-known redirects (a Location)
    redirects: dict[str, str] = field(default_factory=dict)
    requests: list[tuple[str, str]] = field(default_factory=list)  # (path, Host header)
    sni: list[str | None] = field(default_factory=list)  # the names clients asked for
    port: int = 0
    _server: asyncio.Server | None = None

    async def start(self) -> None:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(self.cert_file, self.key_file)
        context.sni_callback = lambda _sock, name, _ctx: self.sni.append(name)  # type: ignore[assignment]
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0, ssl=context)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            _method, target, _version = lines[0].split(" ", 2)
            headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:] if line)}
            host = headers.get("host", "")
            self.requests.append((urlsplit(target).path, host))
            status, body = self._answer(target, host)
            payload = json.dumps(body).encode()
            location = self.redirects.get(host) if urlsplit(target).path == "/.well-known/matrix/server" else None
            if location:
                status = 302
            extra = f"Location: {location}\r\n" if location else ""
            writer.write(
                f"HTTP/1.1 {status} X\r\nContent-Type: application/json\r\n{extra}Content-Length: {len(payload)}\r\nConnection: close\r\n\r\n".encode()
                + payload
            )
            await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, ssl.SSLError):
            pass
        finally:
            writer.close()

    def _answer(self, target: str, host: str) -> tuple[int, dict[str, object]]:
        parts = urlsplit(target)
        if parts.path == "/.well-known/matrix/server":
            delegated = self.well_known.get(host)
            return (200, {"m.server": delegated}) if delegated else (404, {"errcode": "M_NOT_FOUND"})
        if parts.path == "/_matrix/federation/v1/openid/userinfo":
            token = parse_qs(parts.query).get("access_token", [""])[0]
            user = self.tokens.get(token)
            return (
                (200, {"sub": user})
                if user
                else (
                    401,
                    {
                        "errcode": "M_UNKNOWN_TOKEN",
                        "error": "Access token unknown or expired",
                    },
                )
            )
        return 404, {"errcode": "M_UNRECOGNIZED"}
