"""Composition: the services of one postern process, built from its settings."""

from __future__ import annotations

import ssl
from dataclasses import dataclass, field
from typing import Any

from postern.accounts.addressing import normalise_domain
from postern.accounts.admin_token import AdminToken
from postern.accounts.api_keys import ApiKeys
from postern.accounts.authlog import AuthLog
from postern.accounts.passwords import Passwords
from postern.accounts.rate_limit import RateLimiter
from postern.accounts.registration import Registration
from postern.accounts.server_key import ServerKey
from postern.accounts.service import Accounts
from postern.accounts.social_login import verifiers_from
from postern.accounts.two_factor import TwoFactor
from postern.accounts.user_login import UserLogin
from postern.accounts.user_profile import UserProfiles
from postern.aliases.bounces import Bounces
from postern.aliases.domains import CustomDomains
from postern.aliases.forwarding import Forwarder
from postern.aliases.mailboxes import ForwardMailboxes
from postern.aliases.notifications import Notifications
from postern.aliases.replies import Replies
from postern.aliases.service import Aliases
from postern.aliases.settings import AliasSettings
from postern.config import Settings, parse_listen
from postern.delivery.committer import GroupCommitter
from postern.delivery.dns import DnsPythonResolver, Resolver
from postern.delivery.filtering import LocalRules
from postern.delivery.inbound import InboundDelivery
from postern.delivery.mx import parse_relay
from postern.delivery.outbound import OutboundQueue, OutboundSettings
from postern.delivery.queue_admin import QueueAdmin
from postern.delivery.router import Router
from postern.delivery.submission import Submission
from postern.delivery.system_mail import SystemMail
from postern.domains.service import HostedDomains
from postern.events import EventBus
from postern.mailstore.quota import Quota
from postern.mailstore.service import MailStore
from postern.protocols.imap.server import ImapServices
from postern.remote.deliver import FetchedDelivery
from postern.remote.scheduler import RemoteScheduler
from postern.remote.sending import SCHEME as REMOTE_SCHEME
from postern.remote.sending import RemoteSender
from postern.remote.service import RemoteIdentities
from postern.rules.service import Rules
from postern.storage.blobs import BlobStore, open_blob_store
from postern.storage.database import Database, migrate
from postern.telemetry import metrics
from postern.verification.homeserver import Homeservers
from postern.verification.identity_accounts import IdentityAccounts
from postern.verification.mail import ValidationMailer
from postern.verification.ownership import Ownership
from postern.verification.sessions import ValidationSessions


def resolver_from(settings: Settings) -> Resolver:
    """The system's resolver, or the servers named in POSTERN_DNS_SERVERS
    ("ip", "ip:port" or "[v6]:port"; one port for all)."""
    if not settings.dns_servers:
        return DnsPythonResolver()
    servers, port = [], 53
    for item in (i.strip() for i in settings.dns_servers.split(",") if i.strip()):
        if item.startswith("[") or item.count(":") == 1:
            address = parse_listen(item)
            servers.append(address.host)
            port = address.port
        else:
            servers.append(item)
    return DnsPythonResolver(servers, port=port)


@dataclass
class Runtime:
    settings: Settings
    db: Database
    blobs: BlobStore
    bus: EventBus
    accounts: Accounts
    mailstore: MailStore
    admin_token: AdminToken
    server_key: ServerKey
    rate_limiter: RateLimiter
    authlog: AuthLog
    two_factor: TwoFactor
    resolver: Resolver
    router: Router
    committer: GroupCommitter
    inbound: InboundDelivery
    outbound: OutboundQueue
    submission: Submission
    # The user API's accounts (built from the services above in __post_init__).
    api_keys: ApiKeys = field(init=False)
    system_mail: SystemMail = field(init=False)
    registration: Registration = field(init=False)
    user_login: UserLogin = field(init=False)
    profiles: UserProfiles = field(init=False)
    # Email aliases.
    notifications: Notifications = field(init=False)
    aliases: Aliases = field(init=False)
    forward_mailboxes: ForwardMailboxes = field(init=False)
    alias_settings: AliasSettings = field(init=False)
    custom_domains: CustomDomains = field(init=False)
    # Alias mail through the MX: forwards and the bounces of forwards.
    alias_forwarder: Forwarder = field(init=False)
    alias_bounces: Bounces = field(init=False)
    # Replies through reverse aliases (MX and submission).
    alias_replies: Replies = field(init=False)
    # Filters and autoreplies, applied by local delivery.
    rules: Rules = field(init=False)
    # Proof of address ownership (verification/).
    ownership: Ownership = field(init=False)
    validation: ValidationSessions = field(init=False)
    identity_accounts: IdentityAccounts = field(init=False)
    # Remote identities (remote/): third-party accounts fetched and sent through.
    remote_identities: RemoteIdentities = field(init=False)
    remote_scheduler: RemoteScheduler = field(init=False)
    # The operator's tools: hosted domains and the queue (cli.py, http/admin/queue.py).
    hosted_domains: HostedDomains = field(init=False)
    queue_admin: QueueAdmin = field(init=False)
    # Quota reset (mailstore/quota.py): one user, or every user in the background.
    quota: Quota = field(init=False)

    def __post_init__(self) -> None:
        settings = self.settings
        self.hosted_domains = HostedDomains(self.db, settings, self.resolver)
        self.queue_admin = QueueAdmin(self.db, wake=self.outbound.wake)
        self.quota = Quota(self.db)
        self.api_keys = ApiKeys(self.db, self.server_key)
        self.system_mail = SystemMail(
            sender=settings.resolved_system_mail_from,
            hostname=settings.hostname,
            router=self.router,
            inbound=self.inbound,
            outbound=self.outbound,
        )
        common: dict[str, Any] = {"db": self.db, "limiter": self.rate_limiter, "authlog": self.authlog}
        self.registration = Registration(
            settings=settings, accounts=self.accounts, server_key=self.server_key, api_keys=self.api_keys, mail=self.system_mail, **common
        )
        self.user_login = UserLogin(
            registration=self.registration,
            two_factor=self.two_factor,
            api_keys=self.api_keys,
            server_key=self.server_key,
            verifiers=verifiers_from(settings),
            **common,
        )
        self.profiles = UserProfiles(settings=settings, accounts=self.accounts, api_keys=self.api_keys, **common)
        self.notifications = Notifications(self.db)
        self.aliases = Aliases(self.db, settings, self.server_key)
        self.forward_mailboxes = ForwardMailboxes(
            db=self.db, settings=settings, server_key=self.server_key, limiter=self.rate_limiter, mail=self.system_mail
        )
        self.alias_settings = AliasSettings(db=self.db, settings=settings)
        self.custom_domains = CustomDomains(self.db, settings, self.resolver, self.rate_limiter)
        self.alias_replies = Replies(
            db=self.db,
            router=self.router,
            inbound=self.inbound,
            outbound=self.outbound,
            committer=self.committer,
            notifications=self.notifications,
            hostname=settings.hostname,
        )
        self.submission.replies = self.alias_replies
        self.rules = Rules(
            self.db,
            self.bus,
            max_filters=settings.max_filters,
            autoreply_interval_s=settings.autoreply_interval,
            redis_url=settings.redis_url,
        )
        self.inbound.filtering = LocalRules(self.rules, self.outbound, self.blobs, self.db, self.rate_limiter.counters, settings.hostname)
        self._wire_alias_mail()
        self.ownership = Ownership(self.db)
        self.validation = ValidationSessions(
            db=self.db,
            server_key=self.server_key,
            limiter=self.rate_limiter,
            mailer=ValidationMailer(self.system_mail, settings.identity_templates_dir),
            public_url=settings.resolved_public_url,
            server_name=settings.hostname,
            next_link_domains=settings.identity_next_link_domains,
        )
        self.identity_accounts = IdentityAccounts(
            db=self.db, homeservers=Homeservers(ca_file=settings.identity_ca_file), terms_file=settings.identity_terms_file
        )
        self.remote_identities = RemoteIdentities(self.db, settings, self.server_key)
        self.remote_scheduler = RemoteScheduler(
            self.db,
            settings,
            self.remote_identities,
            FetchedDelivery(self.db, self.committer, self.inbound.filtering, settings.hostname),
            self.notifications,
        )
        # Mail sent as a remote identity goes out through its own SMTP server.
        remote_sender = RemoteSender(self.db, self.server_key, self.remote_identities.connector, settings.hostname)
        self.outbound.routes[REMOTE_SCHEME] = remote_sender.send
        self.submission.remote_route = remote_sender.route_for

    def _wire_alias_mail(self) -> None:
        """Alias mail through the MX and LMTP (forwards, bounces, replies); keep this
        last in __post_init__, after ``alias_replies`` is built."""
        reverse_domain = normalise_domain(self.settings.resolved_reverse_alias_domain)[0]
        self.alias_bounces = Bounces(
            self.db,
            self.notifications,
            self.server_key,
            reverse_alias_domain=reverse_domain,
            bounces_to_disable=self.settings.alias_bounces_to_disable,
        )
        self.alias_forwarder = Forwarder(
            db=self.db,
            committer=self.committer,
            outbound=self.outbound,
            server_key=self.server_key,
            notifications=self.notifications,
            reverse_alias_domain=reverse_domain,
        )
        self.inbound.forwarder = self.alias_forwarder
        self.alias_forwarder.filtering = self.inbound.filtering
        self.inbound.bounces = self.alias_bounces
        self.inbound.replies = getattr(self, "alias_replies", None)
        self.outbound.forward_failures = self.alias_bounces.queue_failure

    @classmethod
    def build(cls, settings: Settings, passwords: Passwords | None = None, resolver: Resolver | None = None) -> Runtime:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        metrics.setup(settings.metrics)
        db = Database(settings.resolved_database_url, schema=settings.database_schema, fsync=settings.fsync)
        blobs = open_blob_store(settings.resolved_blob_store, fsync=settings.fsync)
        bus = EventBus()
        passwords = passwords or Passwords(settings.argon2_time_cost, settings.argon2_memory_kib)
        mailstore = MailStore(db, blobs, bus, settings.max_message_size)
        resolver = resolver or resolver_from(settings)
        server_key = ServerKey.load(settings)
        rate_limiter = RateLimiter.for_settings(db, settings.redis_url)
        authlog = AuthLog(db)
        two_factor = TwoFactor(db, server_key, rate_limiter, authlog, bus)
        router = Router(db, server_key=server_key, reverse_alias_domain=settings.resolved_reverse_alias_domain)
        committer = GroupCommitter(mailstore)
        inbound = InboundDelivery(committer, resolver, settings.hostname, settings.check_authentication)
        outbound = OutboundQueue(
            db,
            blobs,
            committer,
            resolver,
            OutboundSettings(
                hostname=settings.hostname,
                mx_port=settings.outbound_mx_port,
                relay=parse_relay(settings.outbound_relay) if settings.outbound_relay else None,
                relay_tls=settings.outbound_relay_tls,
                relay_username=settings.outbound_relay_username,
                relay_password=settings.outbound_relay_password.get_secret_value() if settings.outbound_relay_password else None,
            ),
        )
        return cls(
            settings=settings,
            db=db,
            blobs=blobs,
            bus=bus,
            accounts=Accounts(db, settings, passwords, bus, server_key, rate_limiter, authlog=authlog, two_factor=two_factor),
            mailstore=mailstore,
            admin_token=AdminToken(db, settings),
            server_key=server_key,
            rate_limiter=rate_limiter,
            authlog=authlog,
            two_factor=two_factor,
            resolver=resolver,
            router=router,
            committer=committer,
            inbound=inbound,
            outbound=outbound,
            submission=Submission(db, router, committer, inbound, outbound),
        )

    async def start(self, *, create_token: bool = True) -> str | None:
        """Apply migrations and load the admin token; returns a token created now.

        ``serve`` creates the token itself once every door listens, so that a start
        that fails never stores a token nobody was shown."""
        await migrate(self.db)
        return await self.admin_token.ensure() if create_token else None

    def imap_services(self, tls_context: ssl.SSLContext | None) -> ImapServices:
        """The services of this process's IMAP door, configured from its settings."""
        settings = self.settings
        return ImapServices(
            self.mailstore,
            self.accounts,
            self.bus,
            hostname=settings.hostname,
            max_message_size=settings.max_message_size,
            tls_context=tls_context,
            timeout=settings.imap_timeout,
            preauth_timeout=settings.imap_preauth_timeout,
            connections_per_ip=settings.imap_connections_per_ip,
            appender=self.committer.append,
        )

    async def close(self) -> None:
        await self.quota.close()
        await self.registration.settle()
        await self.rules.close()
        self.mailstore.hot.close()
        await self.rate_limiter.close()
        await self.blobs.close()
        await self.db.close()
