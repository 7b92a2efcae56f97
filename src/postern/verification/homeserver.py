"""Asking a Matrix homeserver who holds an OpenID token (v2 ``/account/register``).

The server name is resolved as Matrix servers resolve each other (the server-server
API, "resolving server names"):

1. an IP literal: that address, with the given port or 8448;
2. a hostname with a port: that host and port;
3. ``https://<hostname>/.well-known/matrix/server`` naming a delegated server: its IP
   literal or host and port as above, else its SRV records (``_matrix-fed._tcp``, then
   ``_matrix._tcp``), else port 8448 of it; the certificate must be the delegated
   name's;
4. the hostname's own SRV records, then port 8448; the certificate must be the
   hostname's.

Then ``GET /_matrix/federation/v1/openid/userinfo`` over TLS (certificates always
checked, against ``POSTERN_IDENTITY_CA_FILE`` when set) answers the user id, whose
server part must be the server name. Tests inject the SRV lookup and a map from
(host, port) to the address to connect to.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import re
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlencode, urljoin, urlsplit

import httpx

log = logging.getLogger("postern.verification.homeserver")

DEFAULT_PORT = 8448
MAX_ANSWER = 64 * 1024
MAX_REDIRECTS = 5
_HOSTNAME = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9-]{0,62})(?:\.[A-Za-z0-9-]{1,63})*\.?$")
_USER_ID = re.compile(r"^@[^:\s]{1,255}:(.{1,255})$")

SrvLookup = Callable[[str], Awaitable[list[tuple[int, int, int, str]]]]  # (priority, weight, port, target)
ConnectMap = Callable[[str, int], tuple[str, int]]


class HomeserverError(Exception):
    """The token could not be checked (unreachable, refused, or a wrong answer)."""


@dataclass(frozen=True, slots=True)
class ServerName:
    host: str  # an IP literal (without brackets) or a hostname
    port: int | None
    is_ip: bool


@dataclass(frozen=True, slots=True)
class Target:
    connect_host: str
    port: int
    host_header: str
    tls_name: str


def parse_server_name(value: str) -> ServerName:
    text = value.strip()
    if not text or len(text) > 255 or not text.isascii():
        raise ValueError("matrix_server_name is not a server name")
    if text.startswith("["):
        host, sep, rest = text[1:].partition("]")
        if not sep or (rest and not rest.startswith(":")):
            raise ValueError("matrix_server_name is not a server name")
        port_text = rest[1:] if rest else None
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise ValueError("matrix_server_name is not a server name") from None
        is_ip = True
    else:
        host, sep, port_text_ = text.partition(":")
        port_text = port_text_ if sep else None
        try:
            ipaddress.IPv4Address(host)
            is_ip = True
        except ValueError:
            if not _HOSTNAME.match(host):
                raise ValueError("matrix_server_name is not a server name") from None
            is_ip = False
    port = None
    if port_text is not None:
        if not port_text.isdigit() or not 1 <= int(port_text) <= 65535:
            raise ValueError("matrix_server_name has an invalid port")
        port = int(port_text)
    return ServerName(host.lower().rstrip("."), port, is_ip)


async def dns_srv(name: str) -> list[tuple[int, int, int, str]]:
    import dns.asyncresolver
    import dns.exception

    try:
        answer = await dns.asyncresolver.resolve(name, "SRV", lifetime=5)
    except (dns.exception.DNSException, OSError):
        return []
    return [(r.priority, r.weight, r.port, r.target.to_text(omit_final_dot=True)) for r in answer]


def _bracket(host: str) -> str:
    return f"[{host}]" if ":" in host else host


class Homeservers:
    def __init__(
        self,
        *,
        ca_file: Path | None = None,
        srv: SrvLookup = dns_srv,
        connect_map: ConnectMap | None = None,
        timeout: float = 10.0,
    ):
        self.ca_file = ca_file
        self.srv = srv
        self.connect_map: ConnectMap = connect_map or (lambda host, port: (host, port))
        self.timeout = timeout

    def _ssl(self) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=str(self.ca_file) if self.ca_file else None)
        return context

    async def _get(self, host: str, port: int, path: str, *, host_header: str, tls_name: str) -> tuple[int, bytes, str | None]:
        """(status, body, Location) of a GET; a body past MAX_ANSWER is cut there (and then
        is no valid answer)."""
        connect_host, connect_port = self.connect_map(host, port)
        url = f"https://{_bracket(connect_host)}:{connect_port}{path}"
        async with (
            httpx.AsyncClient(verify=self._ssl(), timeout=self.timeout, follow_redirects=False, trust_env=False) as client,
            client.stream("GET", url, headers={"Host": host_header}, extensions={"sni_hostname": tls_name}) as response,
        ):
            body = b""
            async for chunk in response.aiter_bytes():
                body += chunk
                if len(body) > MAX_ANSWER:
                    break
            return response.status_code, body, response.headers.get("location")

    async def _srv_target(self, host: str) -> tuple[str, int] | None:
        for prefix in ("_matrix-fed._tcp.", "_matrix._tcp."):
            records = await self.srv(prefix + host)
            if records:
                _priority, _weight, port, target = min(records, key=lambda r: (r[0], -r[1]))
                return target.rstrip("."), port
        return None

    async def _well_known(self, host: str) -> str | None:
        """The ``m.server`` of ``https://host/.well-known/matrix/server``, following
        up to MAX_REDIRECTS https redirects."""
        url = f"https://{host}/.well-known/matrix/server"
        for _ in range(MAX_REDIRECTS + 1):
            parts = urlsplit(url)
            if parts.scheme != "https" or not parts.hostname:
                return None
            target_host = parts.hostname
            path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
            try:
                status, body, location = await self._get(
                    target_host, parts.port or 443, path, host_header=parts.netloc.rpartition("@")[2], tls_name=target_host
                )
            except (httpx.HTTPError, ssl.SSLError, OSError, ValueError):
                return None
            if status in (301, 302, 303, 307, 308) and location:
                url = urljoin(url, location)
                continue
            if status != 200 or len(body) > MAX_ANSWER:
                return None
            try:
                delegated = json.loads(body).get("m.server")
            except (ValueError, AttributeError):
                return None
            return delegated if isinstance(delegated, str) and delegated.strip() else None
        return None

    async def _by_name(self, name: ServerName, *, host_header: str) -> Target | None:
        """Steps 1, 2 and the SRV step for a name (the server's or the delegated one)."""
        if name.is_ip:
            return Target(name.host, name.port or DEFAULT_PORT, host_header, name.host)
        if name.port is not None:
            return Target(name.host, name.port, host_header, name.host)
        srv = await self._srv_target(name.host)
        if srv is not None:
            return Target(srv[0], srv[1], host_header, name.host)
        return None

    async def resolve(self, server_name: str) -> Target:
        name = parse_server_name(server_name)
        header = server_name.strip()
        if name.is_ip or name.port is not None:
            target = await self._by_name(name, host_header=header)
            assert target is not None
            return target
        delegated_text = await self._well_known(name.host)
        if delegated_text is not None:
            try:
                delegated = parse_server_name(delegated_text)
            except ValueError:
                delegated = None
            if delegated is not None:
                header = delegated_text.strip()
                target = await self._by_name(delegated, host_header=header)
                return target or Target(delegated.host, DEFAULT_PORT, header, delegated.host)
        target = await self._by_name(name, host_header=header)
        return target or Target(name.host, DEFAULT_PORT, header, name.host)

    async def user_of(self, server_name: str, access_token: str) -> str:
        """The Matrix user id the homeserver says holds ``access_token``."""
        try:
            name = parse_server_name(server_name)
        except ValueError as error:
            raise HomeserverError(str(error)) from None
        try:
            target = await self.resolve(server_name)
            response = await self._get(
                target.connect_host,
                target.port,
                "/_matrix/federation/v1/openid/userinfo?" + urlencode({"access_token": access_token}),
                host_header=target.host_header,
                tls_name=target.tls_name,
            )
        except (httpx.HTTPError, ssl.SSLError, OSError, ValueError) as error:
            log.info("homeserver %s unreachable: %s", server_name, error)
            raise HomeserverError("the homeserver could not be reached") from None
        status, body, _location = response
        if status != 200:
            raise HomeserverError("the homeserver refused the token")
        try:
            sub = json.loads(body).get("sub") if len(body) <= MAX_ANSWER else None
        except (ValueError, AttributeError):
            sub = None
        match = _USER_ID.match(sub) if isinstance(sub, str) else None
        if match is None:
            raise HomeserverError("the homeserver's answer has no user id")
        server_part = match.group(1).lower()
        expected = (f"[{name.host}]" if ":" in name.host else name.host) + (f":{name.port}" if name.port else "")
        if server_part != expected and server_part != server_name.strip().lower():
            raise HomeserverError("the user id is not of that homeserver")
        return str(sub)
