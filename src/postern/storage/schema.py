"""The metadata schema, in SQLAlchemy Core.

Times are integer milliseconds since the epoch (portable and cheap to compare).
Every row that belongs to a user carries ``user_id`` so that the metadata can later be
distributed by user without a schema change. Alembic migrations in ``migrations/``
create exactly these tables.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    text,
)

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

ID = String(24)

# Process-wide secrets and markers, e.g. the digest of the admin access token.
server_state = Table(
    "server_state",
    metadata,
    Column("key", String(64), primary_key=True),
    Column("value", Text, nullable=False),
)

users = Table(
    "users",
    metadata,
    Column("id", ID, primary_key=True),
    Column("username", String(128), nullable=False, unique=True),
    Column("name", Text),
    Column("password_hash", Text),  # NULL: the account has no password
    Column("address", Text),  # the main address, kept here for cheap listings
    Column("language", String(16)),
    Column("retention_ms", BigInteger),
    Column("quota_allowed", BigInteger, nullable=False),
    Column("storage_used", BigInteger, nullable=False, server_default=text("0")),
    Column("recipients_limit", Integer, nullable=False),
    Column("forwards_limit", Integer, nullable=False),
    Column("pub_key", Text, nullable=False, server_default=""),
    Column("encrypt_messages", Boolean, nullable=False, server_default=text("false")),
    Column("encrypt_forwarded", Boolean, nullable=False, server_default=text("false")),
    Column("activated", Boolean, nullable=False, server_default=text("true")),
    Column("disabled", Boolean, nullable=False, server_default=text("false")),
    Column("require_password_change", Boolean, nullable=False, server_default=text("false")),
    # The account's own contact email (the user API's "email"): where account mail goes.
    # Not a hosted address: it may be anywhere, and never makes postern accept mail.
    Column("email", Text),
    Column("email_key", Text, unique=True),  # normalised, for logins by email
    Column("premium", Boolean, nullable=False, server_default=text("false")),
    # The user API's settings (GET/PATCH /api/setting).
    Column("alias_generator", String(8), nullable=False, server_default="word"),  # word | uuid
    Column("random_alias_suffix", String(16), nullable=False, server_default="word"),  # word | random_string
    Column("sender_format", String(16), nullable=False, server_default="AT"),  # AT, A, NAME_ONLY, AT_ONLY, NO_NAME
    Column("random_alias_default_domain", Text),  # NULL: the first alias domain
    Column("notification_emails", Boolean, nullable=False, server_default=text("true")),
    Column("created_ms", BigInteger, nullable=False),
    CheckConstraint("storage_used >= 0", name="storage_used_positive"),
)

user_tags = Table(
    "user_tags",
    metadata,
    Column("user_id", ID, ForeignKey("users.id", ondelete="CASCADE"), primary_key=True),
    Column("tag", String(128), primary_key=True),
    Index(None, "tag"),
)

addresses = Table(
    "addresses",
    metadata,
    Column("id", ID, primary_key=True),
    Column("user_id", ID, ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    Column("address", Text, nullable=False),  # as displayed (Unicode domain)
    Column("address_key", Text, nullable=False, unique=True),  # normalised: one per system
    Column("main", Boolean, nullable=False, server_default=text("false")),
    Column("created_ms", BigInteger, nullable=False),
    Index(None, "user_id"),
    # At most one main address per user, enforced by the database itself.
    Index(
        "uq_addresses_one_main",
        "user_id",
        unique=True,
        sqlite_where=text("main"),
        postgresql_where=text("main"),
    ),
)

folders = Table(
    "folders",
    metadata,
    Column("id", ID, primary_key=True),
    Column("user_id", ID, ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    Column("path", Text, nullable=False),
    Column("special_use", String(16)),
    Column("subscribed", Boolean, nullable=False, server_default=text("true")),
    Column("retention_ms", BigInteger),
    Column("uidvalidity", BigInteger, nullable=False),
    Column("uid_next", BigInteger, nullable=False, server_default=text("1")),
    Column("modseq", BigInteger, nullable=False, server_default=text("1")),
    # Counters kept in step with every change, so that listings never count rows.
    Column("message_count", Integer, nullable=False, server_default=text("0")),
    Column("unseen_count", Integer, nullable=False, server_default=text("0")),
    Column("size_total", BigInteger, nullable=False, server_default=text("0")),
    Column("created_ms", BigInteger, nullable=False),
    Index(None, "user_id", "path", unique=True),
)

# Raw messages are content-addressed; this table counts the references to each blob.
blobs = Table(
    "blobs",
    metadata,
    Column("key", String(64), primary_key=True),
    Column("size", BigInteger, nullable=False),
    Column("refcount", Integer, nullable=False),
    Column("created_ms", BigInteger, nullable=False),
    Index("ix_blobs_unreferenced", "key", sqlite_where=text("refcount <= 0"), postgresql_where=text("refcount <= 0")),
)

threads = Table(
    "threads",
    metadata,
    Column("id", ID, primary_key=True),
    Column("user_id", ID, ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    Column("subject", Text, nullable=False),  # normalised subject
    Column("updated_ms", BigInteger, nullable=False),
    Index(None, "user_id", "subject"),
)

# Message-IDs seen in a thread (its messages' own ids and the ids they reference).
thread_refs = Table(
    "thread_refs",
    metadata,
    Column("user_id", ID, ForeignKey("users.id", ondelete="CASCADE"), primary_key=True),
    Column("ref", String(255), primary_key=True),
    Column("thread_id", ID, ForeignKey("threads.id", ondelete="CASCADE"), nullable=False),
    Index(None, "thread_id"),
)

messages = Table(
    "messages",
    metadata,
    Column("folder_id", ID, ForeignKey("folders.id", ondelete="CASCADE"), primary_key=True),
    Column("uid", BigInteger, primary_key=True),
    Column("user_id", ID, ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    Column("blob_key", String(64), nullable=False),
    Column("size", BigInteger, nullable=False),
    Column("internal_ms", BigInteger, nullable=False),
    Column("modseq", BigInteger, nullable=False),
    Column("seen", Boolean, nullable=False, server_default=text("false")),
    Column("flagged", Boolean, nullable=False, server_default=text("false")),
    Column("draft", Boolean, nullable=False, server_default=text("false")),
    Column("deleted", Boolean, nullable=False, server_default=text("false")),
    Column("answered", Boolean, nullable=False, server_default=text("false")),
    Column("keywords", Text, nullable=False, server_default="[]"),  # JSON list
    Column("thread_id", ID, nullable=False),
    # The summary parsed once at append, so that listings never open the blob.
    Column("from_name", Text, nullable=False, server_default=""),
    Column("from_address", Text, nullable=False, server_default=""),
    Column("subject", Text, nullable=False, server_default=""),
    Column("message_id", Text),
    Column("date_ms", BigInteger),
    Column("intro", Text, nullable=False, server_default=""),
    Column("has_attachments", Boolean, nullable=False, server_default=text("false")),
    Column("summary", Text, nullable=False),  # JSON: to, cc, bcc, reply-to, references, attachments
    Column("expires_ms", BigInteger),
    # Stays with the message when it moves between folders; message events refer to it.
    Column("mid", ID, nullable=False, server_default=""),
    # Header lines written for this recipient alone (Delivered-To, Received ... for):
    # the message's bytes are prefix + blob, so one blob serves every recipient.
    Column("prefix", LargeBinary, nullable=False, server_default=text("''")),
    Index(None, "user_id", "message_id"),
    Index(None, "user_id", "mid"),
    Index(None, "folder_id", "modseq"),
    Index(None, "thread_id"),
    Index(
        "ix_messages_expiring", "expires_ms", sqlite_where=text("expires_ms IS NOT NULL"), postgresql_where=text("expires_ms IS NOT NULL")
    ),
)


# UIDs expunged from a folder and the MODSEQ of their expunge, so that IMAP QRESYNC can
# tell a client which of the messages it knew have vanished since a MODSEQ (VANISHED
# (EARLIER)). Written by every path that removes messages from a folder.
message_tombstones = Table(
    "message_tombstones",
    metadata,
    Column("folder_id", ID, ForeignKey("folders.id", ondelete="CASCADE"), primary_key=True),
    Column("uid", BigInteger, primary_key=True),
    Column("user_id", ID, ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    Column("modseq", BigInteger, nullable=False),
    Index(None, "folder_id", "modseq"),
)


# The outbound queue: one row per recipient of a message being sent.
outbound = Table(
    "outbound",
    metadata,
    Column("id", ID, primary_key=True),
    # NULL: mail of no user (the identity service's validation mail), never bounced.
    Column("user_id", ID, ForeignKey("users.id", ondelete="CASCADE")),
    Column("queue_id", ID, nullable=False),  # the rows of one message share it
    Column("blob_key", String(64), nullable=False),  # holds one reference until final
    Column("mail_from", Text, nullable=False),
    Column("rcpt", Text, nullable=False),
    Column("domain", Text, nullable=False),  # the recipient's domain, ASCII form
    Column("state", String(16), nullable=False),  # queued, sending, deferred, delivered, bounced
    Column("attempts", Integer, nullable=False, server_default=text("0")),
    Column("next_attempt_ms", BigInteger, nullable=False),
    Column("lease_until_ms", BigInteger),  # while "sending": a crashed sender's rows come back after it
    Column("lease_owner", ID),  # while "sending": the worker that holds the lease (see delivery/queue_owner.py)
    Column("last_response", Text),
    Column("message_mid", ID),  # the Sent copy, for its events
    Column("created_ms", BigInteger, nullable=False),
    Column("updated_ms", BigInteger, nullable=False),
    Column("expires_ms", BigInteger, nullable=False),
    # A filter's forward target that is not an address (rules/): an smtp(s):// relay
    # URL to deliver through, or an http(s):// URL that receives the message by POST.
    Column("target", Text),
    Index(None, "state", "next_attempt_ms"),
    Index(None, "user_id", "created_ms"),
    Index(None, "queue_id"),
)

# The timeline of a message: stored, queued, accepted, deferred, rejected, bounced.
message_events = Table(
    "message_events",
    metadata,
    Column("id", ID, primary_key=True),
    Column("user_id", ID, ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    Column("mid", ID, nullable=False),
    Column("action", String(16), nullable=False),
    Column("data", Text, nullable=False),  # JSON: the event's fields as the API shows them
    Column("created_ms", BigInteger, nullable=False),
    Index(None, "user_id", "mid", "created_ms"),
)

dkim_keys = Table(
    "dkim_keys",
    metadata,
    Column("domain", String(253), primary_key=True),  # ASCII (A-label) form
    Column("selector", String(63), nullable=False),
    Column("algorithm", String(32), nullable=False),
    Column("private_key_pem", Text, nullable=False),
    Column("created_ms", BigInteger, nullable=False),
)

# Accounts and security --------------------------------------------------------------

# Second factors of a user. The TOTP secret is encrypted with the server key
# (accounts/server_key.py); `totp_last_step` refuses a code used once already.
user_2fa = Table(
    "user_2fa",
    metadata,
    Column("user_id", ID, ForeignKey("users.id", ondelete="CASCADE"), primary_key=True),
    Column("totp_secret", Text),  # encrypted; set by setup, kept until 2FA is disabled
    Column("totp_enabled", Boolean, nullable=False, server_default=text("false")),
    Column("totp_last_step", BigInteger, nullable=False, server_default=text("0")),
    Column("updated_ms", BigInteger, nullable=False),
)

# Application specific passwords: random, high-entropy secrets, so a keyed SHA-256 digest
# (not argon2) is enough, and a login finds its password by digest in one lookup.
application_passwords = Table(
    "application_passwords",
    metadata,
    Column("id", ID, primary_key=True),
    Column("user_id", ID, ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    Column("description", Text, nullable=False),
    Column("scopes", Text, nullable=False),  # JSON list: "*" or some of imap, pop3, smtp
    Column("password_digest", String(64), nullable=False, unique=True),
    Column("created_ms", BigInteger, nullable=False),
    Column("last_used_ms", BigInteger),
    Index(None, "user_id", "created_ms"),
)

# The authentication log: logins, failures and security changes; rows expire after 30 days.
authlog = Table(
    "authlog",
    metadata,
    Column("id", ID, primary_key=True),
    Column("user_id", ID, ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    Column("action", String(64), nullable=False),  # "authentication", "create asp", ...
    Column("result", String(32), nullable=False),  # success, fail, ...
    Column("protocol", String(64)),
    Column("sess", String(255)),
    Column("ip", String(64)),
    Column("data", Text, nullable=False, server_default="{}"),  # JSON: asp, scope, requirePasswordChange ...
    Column("created_ms", BigInteger, nullable=False),
    Column("expires_ms", BigInteger, nullable=False),
    Index(None, "user_id", "created_ms"),
    Index(None, "expires_ms"),
)

# User API keys (SimpleLogin "API code"): kept as a keyed digest only.
api_keys = Table(
    "api_keys",
    metadata,
    Column("id", ID, primary_key=True),
    Column("user_id", ID, ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    Column("name", Text, nullable=False),  # the device it was made for
    Column("key_digest", String(64), nullable=False, unique=True),
    Column("created_ms", BigInteger, nullable=False),
    Column("last_used_ms", BigInteger),
    Column("sudo_until_ms", BigInteger),  # PATCH /api/sudo opens a short sudo mode
    Index(None, "user_id"),
)

# Codes and tokens mailed to a user: activation codes, password reset tokens, ... Only a
# keyed digest is kept; `attempts` counts wrong guesses against the live code.
account_codes = Table(
    "account_codes",
    metadata,
    Column("id", ID, primary_key=True),
    Column("user_id", ID, ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    Column("purpose", String(32), nullable=False),  # activate, reset_password, verify_mailbox
    Column("target", Text),  # what the code proves, e.g. the id of the mailbox it verifies
    Column("code_digest", String(64), nullable=False),
    Column("attempts", Integer, nullable=False, server_default=text("0")),
    Column("created_ms", BigInteger, nullable=False),
    Column("expires_ms", BigInteger, nullable=False),
    Index(None, "user_id", "purpose"),
    Index(None, "code_digest"),
    Index(None, "expires_ms"),
)

# Fixed-window counters of the rate limiter when no Redis is configured.
rate_limits = Table(
    "rate_limits",
    metadata,
    Column("key", String(255), primary_key=True),
    Column("window_start_ms", BigInteger, nullable=False),
    Column("count", Integer, nullable=False),
    Column("expires_ms", BigInteger, nullable=False),
    Index(None, "expires_ms"),
)

# The user API's profile pictures, small images served at profile_picture_url.
profile_pictures = Table(
    "profile_pictures",
    metadata,
    Column("user_id", ID, ForeignKey("users.id", ondelete="CASCADE"), primary_key=True),
    Column("token", String(32), nullable=False),  # part of the public URL, changes with the picture
    Column("content_type", String(64), nullable=False),
    Column("data", LargeBinary, nullable=False),
    Column("updated_ms", BigInteger, nullable=False),
)

# Forwarding targets of aliases (the user API's "mailboxes"); ids are integers because
# the user API's clients decode them as such. The registration email is the first one.
mailboxes = Table(
    "mailboxes",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("user_id", ID, ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    Column("email", Text, nullable=False),
    Column("email_key", Text, nullable=False),
    Column("verified", Boolean, nullable=False, server_default=text("false")),
    Column("is_default", Boolean, nullable=False, server_default=text("false")),
    # An email change waits here until the new address is verified.
    Column("pending_email", Text),
    Column("pending_email_key", Text),
    # Replies by MX from this mailbox must pass SPF or DKIM, not merely not fail.
    Column("require_reply_authentication", Boolean, nullable=False, server_default=text("false")),
    Column("created_ms", BigInteger, nullable=False),
    Index(None, "user_id", "email_key", unique=True),
    Index("uq_mailboxes_one_default", "user_id", unique=True, sqlite_where=text("is_default"), postgresql_where=text("is_default")),
)


# Email aliases ---------------------------------------------------------------------------
# Ids are integers: the user API's typed clients decode them as such.

# Users' own domains for aliases; the operator's alias domains are configuration.
custom_domains = Table(
    "custom_domains",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("user_id", ID, ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    Column("domain", String(253), nullable=False, unique=True),  # ASCII (A-label) form
    Column("name", Text),  # the display name given to its aliases' mail
    Column("ownership_token", String(64), nullable=False),  # published as a TXT record
    Column("verified", Boolean, nullable=False, server_default=text("false")),  # ownership proven
    Column("mx_ok", Boolean, nullable=False, server_default=text("false")),
    Column("spf_ok", Boolean, nullable=False, server_default=text("false")),
    Column("dkim_ok", Boolean, nullable=False, server_default=text("false")),
    Column("dmarc_ok", Boolean, nullable=False, server_default=text("false")),
    Column("check_report", Text, nullable=False, server_default="{}"),  # JSON: the last DNS check
    Column("checked_ms", BigInteger),
    Column("catch_all", Boolean, nullable=False, server_default=text("false")),
    Column("random_prefix_generation", Boolean, nullable=False, server_default=text("false")),
    Column("created_ms", BigInteger, nullable=False),
    Index(None, "user_id"),
)

custom_domain_mailboxes = Table(
    "custom_domain_mailboxes",
    metadata,
    Column("domain_id", Integer, ForeignKey("custom_domains.id", ondelete="CASCADE"), primary_key=True),
    Column("mailbox_id", Integer, ForeignKey("mailboxes.id", ondelete="CASCADE"), primary_key=True),
    Column("user_id", ID, ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    Index(None, "mailbox_id"),
)

aliases = Table(
    "aliases",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("user_id", ID, ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    Column("email", Text, nullable=False),  # as displayed (Unicode domain)
    Column("email_key", Text, nullable=False, unique=True),  # normalised
    Column("custom_domain_id", Integer, ForeignKey("custom_domains.id", ondelete="CASCADE")),
    Column("mailbox_id", Integer, ForeignKey("mailboxes.id"), nullable=False),  # the first of its mailboxes
    Column("name", Text),
    Column("note", Text),
    Column("hostname", Text),  # the website it was made for (recommendations)
    Column("enabled", Boolean, nullable=False, server_default=text("true")),
    Column("pinned", Boolean, nullable=False, server_default=text("false")),
    Column("disable_pgp", Boolean, nullable=False, server_default=text("false")),
    Column("nb_forward", Integer, nullable=False, server_default=text("0")),
    Column("nb_block", Integer, nullable=False, server_default=text("0")),
    Column("nb_reply", Integer, nullable=False, server_default=text("0")),
    Column("nb_bounce", Integer, nullable=False, server_default=text("0")),
    # The listing's order (pinned first, then latest activity): creation counts as one.
    Column("latest_activity_ms", BigInteger, nullable=False),
    Column("latest_activity_action", String(8)),  # forward, reply, block, bounced; NULL: none yet
    Column("latest_contact_id", Integer),
    Column("created_ms", BigInteger, nullable=False),
    # Covers the listing: a deep page skips index entries only.
    Index(None, "user_id", "pinned", "latest_activity_ms", "id"),
    Index(None, "user_id", "hostname"),
    Index(None, "custom_domain_id"),
    Index(None, "mailbox_id"),
)

alias_mailboxes = Table(
    "alias_mailboxes",
    metadata,
    Column("alias_id", Integer, ForeignKey("aliases.id", ondelete="CASCADE"), primary_key=True),
    Column("mailbox_id", Integer, ForeignKey("mailboxes.id", ondelete="CASCADE"), primary_key=True),
    Column("user_id", ID, ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    Index(None, "mailbox_id"),
)

# Addresses of deleted aliases: never created again, by anyone.
deleted_aliases = Table(
    "deleted_aliases",
    metadata,
    Column("email_key", Text, primary_key=True),
    Column("email", Text, nullable=False),
    Column("user_id", ID),  # no foreign key: the address stays reserved after the user goes
    Column("custom_domain_id", Integer),  # the custom domain's trash
    Column("deleted_ms", BigInteger, nullable=False),
    Index(None, "custom_domain_id", "deleted_ms"),
)

# Who wrote to an alias (or was written to from it), with the reverse alias that maps
# a mailbox's reply back to them.
contacts = Table(
    "contacts",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("user_id", ID, ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    Column("alias_id", Integer, ForeignKey("aliases.id", ondelete="CASCADE"), nullable=False),
    Column("email", Text, nullable=False),
    Column("email_key", Text, nullable=False),
    Column("name", Text),
    Column("reverse_alias", Text, nullable=False),  # the address, as displayed
    Column("reverse_alias_key", Text, nullable=False, unique=True),
    Column("block_forward", Boolean, nullable=False, server_default=text("false")),
    Column("created_ms", BigInteger, nullable=False),
    Column("last_email_sent_ms", BigInteger),  # the last reply to them
    Index(None, "alias_id", "email_key", unique=True),
    Index(None, "user_id"),
)

# What happened on an alias: forward, reply, block, bounced.
alias_activities = Table(
    "alias_activities",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("user_id", ID, ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    Column("alias_id", Integer, ForeignKey("aliases.id", ondelete="CASCADE"), nullable=False),
    Column("contact_id", Integer, ForeignKey("contacts.id", ondelete="SET NULL")),
    Column("mailbox_id", Integer, ForeignKey("mailboxes.id", ondelete="SET NULL")),
    Column("action", String(8), nullable=False),
    Column("created_ms", BigInteger, nullable=False),
    Index(None, "alias_id", "created_ms"),
    Index(None, "user_id", "action"),
)

# What the user must hear about: an alias disabled after bounces, a refused reply, ...
notifications = Table(
    "notifications",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("user_id", ID, ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    Column("title", Text, nullable=False),
    Column("message", Text, nullable=False),  # HTML, escaped where it quotes anything
    Column("read", Boolean, nullable=False, server_default=text("false")),
    Column("created_ms", BigInteger, nullable=False),
    Index(None, "user_id", "id"),
)

# Mail rules (rules/): filters and autoreplies ----------------------------------------

# A user's message filters (WildDuck filters), applied in creation order at delivery.
# `query` and `action` hold the filter's own JSON object ({"from": ..., "size": ...},
# {"seen": true, "mailbox": id, "targets": [...]}); the id is 24-hex like WildDuck's.
filters = Table(
    "filters",
    metadata,
    Column("id", ID, primary_key=True),
    Column("user_id", ID, ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    Column("name", Text, nullable=False, server_default=""),
    Column("query", Text, nullable=False),
    Column("action", Text, nullable=False),
    Column("disabled", Boolean, nullable=False, server_default=text("false")),
    Column("created_ms", BigInteger, nullable=False),
    Index(None, "user_id", "id"),
)

# A user's autoreply (at most one). `start_ms`/`end_ms` NULL: no bound.
autoreplies = Table(
    "autoreplies",
    metadata,
    Column("user_id", ID, ForeignKey("users.id", ondelete="CASCADE"), primary_key=True),
    Column("status", Boolean, nullable=False, server_default=text("false")),
    Column("name", Text, nullable=False, server_default=""),
    Column("subject", Text, nullable=False, server_default=""),
    Column("text", Text, nullable=False, server_default=""),
    Column("html", Text, nullable=False, server_default=""),
    Column("start_ms", BigInteger),
    Column("end_ms", BigInteger),
    Column("created_ms", BigInteger, nullable=False),
)

# When a user last auto-replied to a sender: at most one reply per sender per interval,
# whichever process delivers (claimed with one conditional upsert).
autoreply_sent = Table(
    "autoreply_sent",
    metadata,
    Column("user_id", ID, ForeignKey("users.id", ondelete="CASCADE"), primary_key=True),
    Column("sender", Text, primary_key=True),  # lowercased envelope sender
    Column("sent_ms", BigInteger, nullable=False),
)


# Remote identities -------------------------------------------------------------------------
# Third-party mail accounts fetched into the store (IMAP, POP3) and sent through (SMTP),
# the Caliopen RFC's remote identities (remote/). Secrets (`secret`, `smtp_secret`,
# `access_token`) are encrypted with the server key, bound to the row's id.
remote_identities = Table(
    "remote_identities",
    metadata,
    Column("id", String(36), primary_key=True),  # a UUID, as the RFC shows
    Column("user_id", ID, ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    Column("identity_type", String(16), nullable=False),  # email
    Column("address", Text, nullable=False),  # the identity's address, as displayed
    Column("address_key", Text, nullable=False),
    Column("protocol", String(8), nullable=False),  # IMAP | POP3
    Column("host", Text, nullable=False),
    Column("port", Integer, nullable=False),
    Column("tls", String(8), nullable=False),  # ssl | starttls | plain (loopback, if allowed)
    Column("login", Text, nullable=False),
    Column("auth", String(8), nullable=False),  # password | oauth2
    Column("secret", Text),  # the password or the OAuth2 refresh token, encrypted
    Column("oauth_provider", String(64)),
    Column("access_token", Text),  # encrypted; with its expiry
    Column("access_expires_ms", BigInteger),
    Column("fetch_method", String(16), nullable=False),  # from_now | all
    Column("folders", Text, nullable=False),  # JSON: ["INBOX"], or ["*"] for all
    Column("keep_on_server", Boolean, nullable=False, server_default=text("true")),
    Column("poll_interval_s", Integer, nullable=False),
    Column("smtp_host", Text),
    Column("smtp_port", Integer),
    Column("smtp_tls", String(8)),
    Column("smtp_login", Text),
    Column("smtp_secret", Text),  # encrypted; NULL: the incoming secret
    Column("connection_required", Boolean, nullable=False, server_default=text("true")),
    Column("cancel_fetch_required", Boolean, nullable=False, server_default=text("false")),
    Column("is_fetching", Boolean, nullable=False, server_default=text("false")),
    Column("connected", Boolean, nullable=False, server_default=text("false")),
    Column("last_connection_ms", BigInteger),
    Column("last_error", Text),
    Column("failing_since_ms", BigInteger),
    Column("failures", Integer, nullable=False, server_default=text("0")),
    Column("stopped", Boolean, nullable=False, server_default=text("false")),  # after days of failure
    Column("fetched_count", BigInteger, nullable=False, server_default=text("0")),
    Column("history_total", BigInteger, nullable=False, server_default=text("0")),
    Column("history_fetched", BigInteger, nullable=False, server_default=text("0")),
    Column("next_fetch_ms", BigInteger, nullable=False),
    Column("lease_owner", ID),
    Column("lease_until_ms", BigInteger),
    Column("created_ms", BigInteger, nullable=False),
    Column("updated_ms", BigInteger, nullable=False),
    Index(None, "user_id", "created_ms"),
    Index(None, "next_fetch_ms"),
)

# Per remote folder (IMAP): its UIDVALIDITY and the first UID that counts as new mail.
remote_folders = Table(
    "remote_folders",
    metadata,
    Column("identity_id", String(36), ForeignKey("remote_identities.id", ondelete="CASCADE"), primary_key=True),
    Column("path", Text, primary_key=True),
    Column("user_id", ID, ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    Column("uidvalidity", BigInteger, nullable=False),
    Column("first_uid", BigInteger, nullable=False),  # from_now: the UIDNEXT when first seen
)

# Every remote message fetched (or deliberately passed over): its remote position,
# written in the same transaction as the local copy. IMAP: folder, UIDVALIDITY and UID
# (uidl ""); POP3: the UIDL (folder "", 0, 0).
remote_messages = Table(
    "remote_messages",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("identity_id", String(36), ForeignKey("remote_identities.id", ondelete="CASCADE"), nullable=False),
    Column("user_id", ID, ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    Column("folder", Text, nullable=False),
    Column("uidvalidity", BigInteger, nullable=False),
    Column("uid", BigInteger, nullable=False),
    Column("uidl", Text, nullable=False),
    Column("message_id", Text),
    Column("content_hash", String(64)),
    Column("local_mid", ID),  # NULL: not delivered (there before a from_now identity, too large)
    Column("created_ms", BigInteger, nullable=False),
    Index(None, "identity_id", "folder", "uidvalidity", "uid", "uidl", unique=True),
    Index(None, "identity_id", "content_hash"),
    Index(None, "identity_id", "message_id"),
)

# Proof of address ownership (verification/) ----------------------------------------------

# Email validation sessions: the identity service's requestToken/submitToken, and the
# proof of an external address inside postern. One per (address, client secret).
validation_sessions = Table(
    "validation_sessions",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),  # the sid
    Column("address", Text, nullable=False),  # as displayed (Unicode domain)
    Column("address_key", Text, nullable=False),  # normalised
    Column("client_secret", String(255), nullable=False),
    # The token is derived from this salt with the server key: the table alone never
    # tells a token, and a resend mails the same one.
    Column("token_salt", String(32), nullable=False),
    Column("send_attempt", BigInteger),  # the highest seen; NULL: none given yet
    Column("next_link", Text),  # checked when stored; the only one a redirect uses
    # A postern user proving an address for themselves (/api/v1/identities); NULL for
    # the identity service's own clients.
    Column("user_id", ID, ForeignKey("users.id", ondelete="CASCADE")),
    Column("created_ms", BigInteger, nullable=False),
    Column("mtime_ms", BigInteger, nullable=False),  # the last change: expiry counts from it
    Column("validated_ms", BigInteger),
    Index(None, "address_key", "client_secret", unique=True),
    Index(None, "mtime_ms"),
    Index(None, "user_id"),
    sqlite_autoincrement=True,  # a sid is never given twice
)

# Addresses a user proved to be theirs (besides their hosted addresses and aliases).
proven_addresses = Table(
    "proven_addresses",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("user_id", ID, ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    Column("address", Text, nullable=False),
    Column("address_key", Text, nullable=False),
    Column("method", String(16), nullable=False),  # "email_token"
    Column("proven_ms", BigInteger, nullable=False),
    Index(None, "user_id", "address_key", unique=True),
)

# The identity service's v2 accounts (Matrix users, proven by an OpenID token from
# their homeserver), the terms each accepted, and their access tokens (digests).
identity_accounts = Table(
    "identity_accounts",
    metadata,
    Column("matrix_user_id", String(255), primary_key=True),
    Column("accepted_terms", Text, nullable=False, server_default=""),  # URLs, one a line
    Column("created_ms", BigInteger, nullable=False),
)

identity_tokens = Table(
    "identity_tokens",
    metadata,
    Column("token_digest", String(64), primary_key=True),
    Column("matrix_user_id", String(255), ForeignKey("identity_accounts.matrix_user_id", ondelete="CASCADE"), nullable=False),
    Column("created_ms", BigInteger, nullable=False),
    Index(None, "matrix_user_id"),
)

# --- IMAP session state shared by every process (imap-c) ----------------------------
# \Recent (RFC 3501 §2.3.2) belongs to exactly one session: the highest UID of each
# folder some read-write session has claimed as recent, moved on by a conditional
# UPDATE, so that two sessions in two processes (or nodes) never both claim a UID.
imap_recent = Table(
    "imap_recent",
    metadata,
    Column("folder_id", ID, ForeignKey("folders.id", ondelete="CASCADE"), primary_key=True),
    Column("claimed_uid", BigInteger, nullable=False, server_default=text("0")),
)

# Subscriptions to names that are no folder now (RFC 3501 §6.3.6: SUBSCRIBE need not
# name an existing mailbox, and DELETE does not unsubscribe). The subscriptions of
# existing folders stay in folders.subscribed, which the HTTP API shows too.
imap_subscriptions = Table(
    "imap_subscriptions",
    metadata,
    Column("user_id", ID, ForeignKey("users.id", ondelete="CASCADE"), primary_key=True),
    Column("path", Text, primary_key=True),
)

# One namespace of addresses (issue 14) ---------------------------------------------------
# Every address postern hosts or forwards, by its normalised form: a hosted address
# (address), an alias (alias), the address of a deleted alias (deleted_alias, held for
# ever) or a contact's reverse alias (reverse_alias). The primary key is the one place
# that decides who holds an address (storage/address_claims.py).
address_claims = Table(
    "address_claims",
    metadata,
    Column("address_key", Text, primary_key=True),
    Column("kind", String(16), nullable=False),
    Column("user_id", ID),  # no foreign key: a deleted alias stays held after its user goes
    Column("created_ms", BigInteger, nullable=False),
    Index(None, "user_id"),
)

# Hosted domains (issue 20) ------------------------------------------------------------
# The domains an operator added ahead of their first address (`postern domain add`).
# The hosted domains are these together with the domains of users' addresses, the alias
# domains of the configuration and the users' custom domains (domains/service.py).
hosted_domains = Table(
    "hosted_domains",
    metadata,
    Column("domain", String(253), primary_key=True),  # ASCII (A-label) form
    Column("created_ms", BigInteger, nullable=False),
)
