"""Every setting in one place.

Precedence, highest first: environment variables ``POSTERN_*``, the optional TOML file
given with ``--config`` (or ``POSTERN_CONFIG``), then the defaults below. The defaults
run with no configuration at all: loopback listeners on unprivileged ports and an
embedded SQLite database under ``./postern-data``.
"""

from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import (
    BaseSettings,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)


@dataclass(frozen=True, slots=True)
class ListenAddress:
    host: str
    port: int

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


def parse_listen(value: str) -> ListenAddress:
    """``host:port``, ``[v6]:port`` or ``:port`` (all interfaces)."""
    text = value.strip()
    if text.startswith("["):
        host, sep, port = text[1:].partition("]:")
        if not sep:
            raise ValueError(f"expected [host]:port, got {value!r}")
    else:
        host, sep, port = text.rpartition(":")
        if not sep:
            raise ValueError(f"expected host:port, got {value!r}")
        host = host or "0.0.0.0"
    if not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"invalid port in {value!r}")
    return ListenAddress(host, int(port))


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="POSTERN_", extra="ignore")

    # Where the embedded database, the blob folder and the generated secrets live.
    data_dir: Path = Path("./postern-data")
    # sqlite+aiosqlite:///path or postgresql+asyncpg://user@host/db; default: SQLite in data_dir.
    database_url: str | None = None
    # PostgreSQL schema to use (search_path); lets several instances share one database.
    database_schema: str | None = None
    # Raw message store: a folder path, file:///path, s3://bucket/prefix or memory://.
    blob_store: str | None = None
    # fsync blobs and the SQLite journal; only benchmark seeding turns this off.
    fsync: bool = True

    http_listen: str = "127.0.0.1:8080"
    smtp_listen: str = "127.0.0.1:2525"  # incoming mail (MX); 0.0.0.0:25 in production
    lmtp_listen: str = "127.0.0.1:2424"
    submission_listen: str = "127.0.0.1:2587"  # 0.0.0.0:587 in production
    pop3_listen: str = "127.0.0.1:1110"  # 0.0.0.0:110 in production (STLS offered)
    pop3s_listen: str | None = None  # POP3 over implicit TLS: 0.0.0.0:995 in production
    imap_listen: str = "127.0.0.1:1143"  # 0.0.0.0:143 in production (STARTTLS offered)
    imaps_listen: str | None = None  # IMAP over implicit TLS: 0.0.0.0:993 in production
    # Seconds an IMAP session may stay silent (IDLE included) before it is logged out.
    imap_timeout: float = Field(default=1800.0, gt=0)
    imap_preauth_timeout: float = Field(default=60.0, gt=0)
    imap_connections_per_ip: int = Field(default=20, ge=1)
    # The HTTP door's guards against slow or greedy clients: seconds to send a request's
    # head (request line and headers), seconds of silence allowed while a body is
    # being sent, open connections per client address (a trusted proxy's excepted).
    http_header_timeout: float = Field(default=10.0, gt=0)
    http_body_timeout: float = Field(default=30.0, gt=0)
    http_connections_per_ip: int = Field(default=50, ge=1)
    # Addresses (or CIDR networks) of reverse proxies whose X-Forwarded-For and
    # X-Forwarded-Proto are believed, comma separated; none by default, so the peer's
    # own address is what rate limits and the authentication log see.
    trusted_proxies: str = ""
    # Which parts this process runs: any of http, smtp, lmtp, submission, pop3, imap, queue, gc,
    # remote (the remote identity fetch scheduler).
    doors: str = "http,smtp,lmtp,submission,pop3,imap,queue,gc,remote"

    # TLS certificate and key (PEM) for STARTTLS; a self-signed pair is made when unset.
    tls_cert: Path | None = None
    tls_key: Path | None = None

    smtp_max_recipients: int = Field(default=100, ge=1, le=10000)
    smtp_connections_per_ip: int = Field(default=20, ge=1)
    smtp_timeout: float = Field(default=300.0, gt=0)
    # POP3 closes a connection idle this long (RFC 1939: at least 10 minutes).
    pop3_timeout: float = Field(default=600.0, gt=0)
    pop3_connections_per_ip: int = Field(default=20, ge=1)
    # Check SPF, DKIM and DMARC of mail arriving by MX.
    check_authentication: bool = True
    # Processes that run the MX and LMTP sessions and their deliveries: "auto" (one per
    # CPU), or a number; 1 keeps them in the serving process itself.
    mail_workers: str = "auto"

    # DNS servers for MX, SPF, DKIM and DMARC lookups ("ip" or "ip:port", comma separated);
    # the system's resolver when unset.
    dns_servers: str | None = None

    # Send all outgoing mail through this relay (host:port) instead of to MX hosts.
    outbound_relay: str | None = None
    outbound_relay_tls: str = Field(default="starttls", pattern="^(starttls|tls|none)$")
    outbound_relay_username: str | None = None
    outbound_relay_password: SecretStr | None = None
    # The port of remote MX hosts (25; a test sets another).
    outbound_mx_port: int = Field(default=25, ge=1, le=65535)

    # When set, this is the admin access token; otherwise one is generated at first start.
    admin_token: SecretStr | None = None
    # Set to false to serve the admin API without a token (only behind a firewall).
    admin_auth: bool = True
    # The server key: encrypts stored TOTP secrets, keys the digests of API keys, codes
    # and application passwords, signs short-lived tokens. Generated into
    # data_dir/server.key at first start when unset; every process of a cluster must
    # share one (set it here, 32 bytes or more, e.g. `openssl rand -base64 32`).
    secret_key: SecretStr | None = None
    # redis://host:port/db: shared rate limits and change events across processes.
    # Without it, rate limits are kept in the database and events stay in one serve.
    redis_url: str | None = None
    # The Redis pub/sub channel of the change events: one per site sharing a Redis.
    event_channel: str = Field(default="postern:events", min_length=1, max_length=200)

    # The mail domain used for addresses generated from usernames.
    domain: str = "localhost"
    # The name this server gives itself (SMTP greeting, Received headers, profiles).
    hostname: str = "localhost"
    # The ports mail clients reach from outside, written into the mail profiles made
    # for application passwords, when they differ from the listening ports (a proxy or
    # port forward in between). Unset: the listening port (IMAP: 993 without one).
    imap_public_port: int | None = Field(default=None, ge=1, le=65535)
    submission_public_port: int | None = Field(default=None, ge=1, le=65535)
    # The URL users reach the HTTP API at (links in mail, profile picture URLs);
    # http://{http_listen} when unset.
    public_url: str | None = None
    # The MTA-STS policy's mode for the hosted domains (/.well-known/mta-sts.txt):
    # "testing" until this is true, then "enforce" (only with real TLS certificates).
    mta_sts_enforce: bool = False
    # From of the mail postern sends itself (activation codes, password resets);
    # "postern <no-reply@{domain}>" when unset.
    system_mail_from: str | None = None

    # The user API (SimpleLogin): whether anyone may register an account there.
    registration: bool = True
    # Aliases a user without premium may have, as told to the apps (user_info).
    max_alias_free_plan: int = Field(default=5, ge=0)
    # Whether users without premium may create reverse aliases (contacts).
    free_reverse_alias: bool = True
    # The operator's domains on which users make aliases (comma-separated in the
    # environment); empty: the mail `domain`. Premium domains are offered to premium
    # users only. Every one of them must have its MX pointing here.
    alias_domains: Annotated[list[str], NoDecode] = []
    premium_alias_domains: Annotated[list[str], NoDecode] = []
    # The domain of reverse aliases and of the bounce (VERP) addresses of forwarded
    # mail; the first alias domain when unset.
    reverse_alias_domain: str | None = None
    # Local parts no user may take as an alias on the operator's shared alias domains,
    # beside the built-in list (RFC 2142 role names, postern's own system senders):
    # comma-separated in the environment.
    reserved_local_parts: Annotated[list[str], NoDecode] = []
    # The operator's policy for POST /api/import/aliases on shared alias domains:
    # false (the default) takes only the forms alias/options and alias/random offer
    # (a prefix and a random suffix, or a random alias); true takes any local part
    # that hand creation takes (never a reserved one).
    alias_import_any_local_part: bool = False
    # Bounces within 7 days after which an alias is disabled (and its user told).
    alias_bounces_to_disable: int = Field(default=5, ge=1)
    # App store receipts (POST /api/apple/process_payment) are checked only with the
    # app's shared secret; the phone endpoints need an SMS provider. Unset: a clear error.
    apple_shared_secret: SecretStr | None = None
    sms_provider_url: str | None = None
    # "Sign in with Google / Facebook" of the apps: off unless configured.
    google_client_id: str | None = None
    facebook_app_id: str | None = None
    facebook_app_secret: SecretStr | None = None

    # The identity service (Matrix email validation, /_matrix/identity/...): a folder
    # of mail templates (validation.subject, validation.txt, validation.html; the
    # built-in ones when unset or missing); the domains a next_link may lead to
    # (comma-separated; empty: any http(s) URL); a JSON file of the terms users must
    # accept ({"policies": {...}} as GET /_matrix/identity/v2/terms answers; unset: no
    # terms); the CA bundle that homeservers' certificates are checked against when
    # a v2 account registers (unset: the system's).
    identity_templates_dir: Path | None = None
    identity_next_link_domains: Annotated[list[str], NoDecode] = []
    identity_terms_file: Path | None = None
    identity_ca_file: Path | None = None

    default_quota: int = Field(default=1 << 30, ge=0)
    default_recipients: int = Field(default=2000, ge=0)
    default_forwards: int = Field(default=2000, ge=0)
    max_message_size: int = Field(default=50 * 1024 * 1024, gt=0)
    # Mail rules: filters per user, and seconds between two autoreplies to one sender.
    max_filters: int = Field(default=400, ge=0)
    autoreply_interval: float = Field(default=4 * 3600.0, gt=0)

    # argon2id cost of password hashes (RFC 9106's second recommended profile).
    argon2_time_cost: int = Field(default=3, ge=1)
    argon2_memory_kib: int = Field(default=65536, ge=8)
    # Seconds a successful login is remembered (a keyed digest, in memory), so that the
    # same password again skips argon2id (accounts/login_cache.py); 0: never.
    login_cache_seconds: float = Field(default=300.0, ge=0)

    # Seconds between garbage collection sweeps (expired messages, unreferenced blobs).
    gc_interval: float = Field(default=300.0, gt=0)

    # Remote identities (third-party accounts fetched over IMAP/POP3, sent through by SMTP).
    # A CA file (PEM) trusted besides the system's CAs' place, for servers with a private CA.
    remote_ca_file: Path | None = None
    # Allow TLS mode "plain" (no TLS) for servers on loopback only (tests, a local bridge).
    remote_allow_plain_loopback: bool = False
    # Fetches running at once in one process; the poll interval when the user sets none,
    # and the shortest one a user may set (seconds).
    remote_concurrency: int = Field(default=4, ge=1, le=256)
    remote_poll_interval: int = Field(default=300, ge=1)
    remote_min_poll_interval: int = Field(default=60, ge=1)
    # Seconds a remote server may stay silent; failing this long stops an identity (and
    # tells its user).
    remote_timeout: float = Field(default=60.0, gt=0)
    remote_stop_after: float = Field(default=3 * 86400.0, gt=0)
    # OAuth2 providers as JSON: {"gmail": {"client_id": ..., "client_secret": ...,
    # "token_url": ..., "mechanism": "XOAUTH2" | "OAUTHBEARER"}}.
    remote_oauth2_providers: str | None = None

    log_level: str = "info"
    # text (one readable line per event) or json (one JSON object per line, for log shippers).
    log_format: Literal["text", "json"] = "text"
    # Prometheus /metrics: on the HTTP listener behind the admin token (metrics=true),
    # or, when metrics_listen is set, on a listener of its own without a token.
    metrics: bool = True
    metrics_listen: str | None = None

    # Set by load_settings(); not an environment variable of its own.
    config_file: Path | None = Field(default=None, exclude=True)

    @field_validator("http_listen", "smtp_listen", "lmtp_listen", "submission_listen", "pop3_listen", "imap_listen", "metrics_listen")
    @classmethod
    def _check_listen(cls, value: str | None) -> str | None:
        if value is not None:
            parse_listen(value)
        return value

    @field_validator("reserved_local_parts", mode="before")
    @classmethod
    def _split_local_parts(cls, value: Any) -> list[str]:
        items = value.split(",") if isinstance(value, str) else list(value or [])
        return [str(item).strip().lower() for item in items if str(item).strip()]

    @field_validator("alias_domains", "premium_alias_domains", "identity_next_link_domains", mode="before")
    @classmethod
    def _split_domains(cls, value: Any) -> list[str]:
        items = value.split(",") if isinstance(value, str) else list(value or [])
        return [str(item).strip().lower().rstrip(".") for item in items if str(item).strip()]

    @field_validator("trusted_proxies")
    @classmethod
    def _check_proxies(cls, value: str) -> str:
        for item in value.split(","):
            if item.strip():
                try:
                    ipaddress.ip_network(item.strip(), strict=False)
                except ValueError:
                    raise ValueError(f"trusted_proxies: {item.strip()!r} is not an IP address or network") from None
        return value

    @field_validator("pop3s_listen", "imaps_listen")
    @classmethod
    def _check_optional_listen(cls, value: str | None) -> str | None:
        if value is not None and value.strip():
            parse_listen(value)
            return value
        return None

    @field_validator("mail_workers", mode="before")
    @classmethod
    def _check_mail_workers(cls, value: Any) -> str:
        text = str(value).strip().lower()
        if text != "auto" and not (text.isdigit() and 1 <= int(text) <= 256):
            raise ValueError(f"expected auto or a number from 1 to 256, got {value!r}")
        return text

    @field_validator("doors")
    @classmethod
    def _check_doors(cls, value: str) -> str:
        unknown = set(split_doors(value)) - DOORS
        if unknown:
            raise ValueError(f"unknown doors: {', '.join(sorted(unknown))} (known: {', '.join(sorted(DOORS))})")
        return value

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        toml_file = _TOML_FILE.get("path")
        if toml_file is not None:
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=toml_file))
        return tuple(sources)

    # Derived values -----------------------------------------------------------------

    @property
    def http_address(self) -> ListenAddress:
        return parse_listen(self.http_listen)

    @property
    def resolved_public_url(self) -> str:
        return (self.public_url or f"http://{self.http_address}").rstrip("/")

    @property
    def resolved_alias_domains(self) -> list[str]:
        """Every operator alias domain, the free ones first."""
        free = self.alias_domains or ([] if self.premium_alias_domains else [self.domain])
        return free + [d for d in self.premium_alias_domains if d not in free]

    @property
    def resolved_reverse_alias_domain(self) -> str:
        return self.reverse_alias_domain or self.resolved_alias_domains[0]

    @property
    def resolved_system_mail_from(self) -> str:
        return self.system_mail_from or f"postern <no-reply@{self.domain}>"

    @property
    def trusted_proxy_list(self) -> list[str]:
        return [item.strip() for item in self.trusted_proxies.split(",") if item.strip()]

    @property
    def enabled_doors(self) -> set[str]:
        return set(split_doors(self.doors))

    @property
    def resolved_mail_workers(self) -> int:
        """How many worker processes take the MX and LMTP doors; 1: the serving
        process does. Stores that only one process can see (in memory) keep 1."""
        if not self.enabled_doors & {"smtp", "lmtp"}:
            return 1
        url = self.resolved_database_url
        if ":memory:" in url or url.rstrip("/").endswith("sqlite+aiosqlite:") or self.resolved_blob_store.startswith("memory:"):
            return 1
        if self.mail_workers == "auto":
            return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1)
        return int(self.mail_workers)

    @property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return async_database_url(self.database_url)
        return f"sqlite+aiosqlite:///{(self.data_dir / 'postern.sqlite3').resolve()}"

    @property
    def resolved_blob_store(self) -> str:
        return self.blob_store or str((self.data_dir / "blobs").resolve())


DOORS = {"http", "smtp", "lmtp", "submission", "pop3", "imap", "queue", "gc", "remote"}


def split_doors(value: str) -> list[str]:
    return [d.strip().lower() for d in value.split(",") if d.strip()]


_TOML_FILE: dict[str, Path | None] = {"path": None}

# Operators write the URL their database documents; postern needs the async driver.
_ASYNC_DRIVERS = {
    "postgres://": "postgresql+asyncpg://",
    "postgresql://": "postgresql+asyncpg://",
    "postgresql+psycopg://": "postgresql+asyncpg://",
    "postgresql+psycopg2://": "postgresql+asyncpg://",
    "sqlite://": "sqlite+aiosqlite://",
}


def async_database_url(url: str) -> str:
    for prefix, replacement in _ASYNC_DRIVERS.items():
        if url.startswith(prefix):
            return replacement + url[len(prefix) :]
    return url


def load_settings(config_file: str | Path | None = None, **overrides: Any) -> Settings:
    """Build the settings from the environment and an optional TOML file."""
    path = config_file or os.environ.get("POSTERN_CONFIG")
    toml_path = Path(path) if path else None
    if toml_path is not None and not toml_path.is_file():
        raise FileNotFoundError(f"configuration file not found: {toml_path}")
    _TOML_FILE["path"] = toml_path
    try:
        settings = Settings(**overrides)
    finally:
        _TOML_FILE["path"] = None
    settings.config_file = toml_path
    return settings
