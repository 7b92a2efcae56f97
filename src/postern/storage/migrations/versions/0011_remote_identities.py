"""remote identities: the accounts fetched and sent through, their folders and the
remote position of every message fetched

Revision ID: 0011
Revises: 0012
"""

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "remote_identities",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("user_id", sa.String(length=24), nullable=False),
        sa.Column("identity_type", sa.String(length=16), nullable=False),
        sa.Column("address", sa.Text(), nullable=False),
        sa.Column("address_key", sa.Text(), nullable=False),
        sa.Column("protocol", sa.String(length=8), nullable=False),
        sa.Column("host", sa.Text(), nullable=False),
        sa.Column("port", sa.Integer(), nullable=False),
        sa.Column("tls", sa.String(length=8), nullable=False),
        sa.Column("login", sa.Text(), nullable=False),
        sa.Column("auth", sa.String(length=8), nullable=False),
        sa.Column("secret", sa.Text(), nullable=True),
        sa.Column("oauth_provider", sa.String(length=64), nullable=True),
        sa.Column("access_token", sa.Text(), nullable=True),
        sa.Column("access_expires_ms", sa.BigInteger(), nullable=True),
        sa.Column("fetch_method", sa.String(length=16), nullable=False),
        sa.Column("folders", sa.Text(), nullable=False),
        sa.Column(
            "keep_on_server",
            sa.Boolean(),
            server_default=sa.text("true"),
            nullable=False,
        ),
        sa.Column("poll_interval_s", sa.Integer(), nullable=False),
        sa.Column("smtp_host", sa.Text(), nullable=True),
        sa.Column("smtp_port", sa.Integer(), nullable=True),
        sa.Column("smtp_tls", sa.String(length=8), nullable=True),
        sa.Column("smtp_login", sa.Text(), nullable=True),
        sa.Column("smtp_secret", sa.Text(), nullable=True),
        sa.Column(
            "connection_required",
            sa.Boolean(),
            server_default=sa.text("true"),
            nullable=False,
        ),
        sa.Column(
            "cancel_fetch_required",
            sa.Boolean(),
            server_default=sa.text("false"),
            nullable=False,
        ),
        sa.Column(
            "is_fetching", sa.Boolean(), server_default=sa.text("false"), nullable=False
        ),
        sa.Column(
            "connected", sa.Boolean(), server_default=sa.text("false"), nullable=False
        ),
        sa.Column("last_connection_ms", sa.BigInteger(), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("failing_since_ms", sa.BigInteger(), nullable=True),
        sa.Column(
            "failures", sa.Integer(), server_default=sa.text("0"), nullable=False
        ),
        sa.Column(
            "stopped", sa.Boolean(), server_default=sa.text("false"), nullable=False
        ),
        sa.Column(
            "fetched_count",
            sa.BigInteger(),
            server_default=sa.text("0"),
            nullable=False,
        ),
        sa.Column(
            "history_total",
            sa.BigInteger(),
            server_default=sa.text("0"),
            nullable=False,
        ),
        sa.Column(
            "history_fetched",
            sa.BigInteger(),
            server_default=sa.text("0"),
            nullable=False,
        ),
        sa.Column("next_fetch_ms", sa.BigInteger(), nullable=False),
        sa.Column("lease_owner", sa.String(length=24), nullable=True),
        sa.Column("lease_until_ms", sa.BigInteger(), nullable=True),
        sa.Column("created_ms", sa.BigInteger(), nullable=False),
        sa.Column("updated_ms", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name=op.f("fk_remote_identities_user_id_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_remote_identities")),
    )
    with op.batch_alter_table("remote_identities", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_remote_identities_user_id_created_ms"),
            ["user_id", "created_ms"],
            unique=False,
        )
        batch_op.create_index(
            batch_op.f("ix_remote_identities_next_fetch_ms"),
            ["next_fetch_ms"],
            unique=False,
        )

    op.create_table(
        "remote_folders",
        sa.Column("identity_id", sa.String(length=36), nullable=False),
        sa.Column("path", sa.Text(), nullable=False),
        sa.Column("user_id", sa.String(length=24), nullable=False),
        sa.Column("uidvalidity", sa.BigInteger(), nullable=False),
        sa.Column("first_uid", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["identity_id"],
            ["remote_identities.id"],
            name=op.f("fk_remote_folders_identity_id_remote_identities"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name=op.f("fk_remote_folders_user_id_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("identity_id", "path", name=op.f("pk_remote_folders")),
    )

    op.create_table(
        "remote_messages",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("identity_id", sa.String(length=36), nullable=False),
        sa.Column("user_id", sa.String(length=24), nullable=False),
        sa.Column("folder", sa.Text(), nullable=False),
        sa.Column("uidvalidity", sa.BigInteger(), nullable=False),
        sa.Column("uid", sa.BigInteger(), nullable=False),
        sa.Column("uidl", sa.Text(), nullable=False),
        sa.Column("message_id", sa.Text(), nullable=True),
        sa.Column("content_hash", sa.String(length=64), nullable=True),
        sa.Column("local_mid", sa.String(length=24), nullable=True),
        sa.Column("created_ms", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["identity_id"],
            ["remote_identities.id"],
            name=op.f("fk_remote_messages_identity_id_remote_identities"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name=op.f("fk_remote_messages_user_id_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_remote_messages")),
    )
    with op.batch_alter_table("remote_messages", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_remote_messages_identity_id_folder_uidvalidity_uid_uidl"),
            ["identity_id", "folder", "uidvalidity", "uid", "uidl"],
            unique=True,
        )
        batch_op.create_index(
            batch_op.f("ix_remote_messages_identity_id_content_hash"),
            ["identity_id", "content_hash"],
            unique=False,
        )
        batch_op.create_index(
            batch_op.f("ix_remote_messages_identity_id_message_id"),
            ["identity_id", "message_id"],
            unique=False,
        )


def downgrade() -> None:
    op.drop_table("remote_messages")
    op.drop_table("remote_folders")
    op.drop_table("remote_identities")
