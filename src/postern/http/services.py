"""What the HTTP app asks of the process that serves it: the domain services its
routes call. ``serve.runtime.Runtime`` fills it in (``app.state.runtime``); the HTTP
room defines it so that it never imports the process layer above it. A route that
needs another service adds it here (and the runtime already has it)."""

from __future__ import annotations

from typing import Protocol

from postern.accounts.admin_token import AdminToken
from postern.accounts.api_keys import ApiKeys
from postern.accounts.authlog import AuthLog
from postern.accounts.registration import Registration
from postern.accounts.service import Accounts
from postern.accounts.two_factor import TwoFactor
from postern.accounts.user_login import UserLogin
from postern.accounts.user_profile import UserProfiles
from postern.aliases.domains import CustomDomains
from postern.aliases.mailboxes import ForwardMailboxes
from postern.aliases.notifications import Notifications
from postern.aliases.service import Aliases
from postern.aliases.settings import AliasSettings
from postern.config import Settings
from postern.delivery.outbound import OutboundQueue
from postern.delivery.queue_admin import QueueAdmin
from postern.domains.service import HostedDomains
from postern.mailstore.quota import Quota
from postern.mailstore.service import MailStore
from postern.remote.service import RemoteIdentities
from postern.rules.service import Rules
from postern.storage.database import Database
from postern.verification.identity_accounts import IdentityAccounts
from postern.verification.ownership import Ownership
from postern.verification.sessions import ValidationSessions


class HttpServices(Protocol):
    @property
    def settings(self) -> Settings: ...
    @property
    def db(self) -> Database: ...
    @property
    def accounts(self) -> Accounts: ...
    @property
    def admin_token(self) -> AdminToken: ...
    @property
    def authlog(self) -> AuthLog: ...
    @property
    def two_factor(self) -> TwoFactor: ...
    @property
    def api_keys(self) -> ApiKeys: ...
    @property
    def registration(self) -> Registration: ...
    @property
    def user_login(self) -> UserLogin: ...
    @property
    def profiles(self) -> UserProfiles: ...
    @property
    def mailstore(self) -> MailStore: ...
    @property
    def aliases(self) -> Aliases: ...
    @property
    def forward_mailboxes(self) -> ForwardMailboxes: ...
    @property
    def alias_settings(self) -> AliasSettings: ...
    @property
    def custom_domains(self) -> CustomDomains: ...
    @property
    def notifications(self) -> Notifications: ...
    @property
    def rules(self) -> Rules: ...
    @property
    def ownership(self) -> Ownership: ...
    @property
    def validation(self) -> ValidationSessions: ...
    @property
    def identity_accounts(self) -> IdentityAccounts: ...
    @property
    def remote_identities(self) -> RemoteIdentities: ...
    @property
    def hosted_domains(self) -> HostedDomains: ...
    @property
    def queue_admin(self) -> QueueAdmin: ...
    @property
    def quota(self) -> Quota: ...
    @property
    def outbound(self) -> OutboundQueue: ...
