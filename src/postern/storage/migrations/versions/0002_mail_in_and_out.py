"""mail in and out: message mid and prefix, outbound queue, message events, DKIM keys

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("messages") as batch:
        batch.add_column(sa.Column("mid", sa.String(24), nullable=False, server_default=""))
        batch.add_column(sa.Column("prefix", sa.LargeBinary(), nullable=False, server_default=sa.text("''")))
        batch.create_index("ix_messages_user_id_mid", ["user_id", "mid"])
    # Messages stored before this revision get an id of their own.
    bind = op.get_bind()
    if bind.dialect.name == "postgresql":
        op.execute("UPDATE messages SET mid = substr(md5(random()::text || folder_id || uid::text), 1, 24) WHERE mid = ''")
    else:
        op.execute("UPDATE messages SET mid = lower(hex(randomblob(12))) WHERE mid = ''")

    op.create_table(
        "outbound",
        sa.Column("id", sa.String(24), nullable=False),
        sa.Column("user_id", sa.String(24), nullable=False),
        sa.Column("queue_id", sa.String(24), nullable=False),
        sa.Column("blob_key", sa.String(64), nullable=False),
        sa.Column("mail_from", sa.Text(), nullable=False),
        sa.Column("rcpt", sa.Text(), nullable=False),
        sa.Column("domain", sa.Text(), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("next_attempt_ms", sa.BigInteger(), nullable=False),
        sa.Column("lease_until_ms", sa.BigInteger(), nullable=True),
        sa.Column("last_response", sa.Text(), nullable=True),
        sa.Column("message_mid", sa.String(24), nullable=True),
        sa.Column("created_ms", sa.BigInteger(), nullable=False),
        sa.Column("updated_ms", sa.BigInteger(), nullable=False),
        sa.Column("expires_ms", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], name=op.f("fk_outbound_user_id_users"), ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_outbound")),
    )
    op.create_index("ix_outbound_state_next_attempt_ms", "outbound", ["state", "next_attempt_ms"])
    op.create_index("ix_outbound_user_id_created_ms", "outbound", ["user_id", "created_ms"])
    op.create_index("ix_outbound_queue_id", "outbound", ["queue_id"])

    op.create_table(
        "message_events",
        sa.Column("id", sa.String(24), nullable=False),
        sa.Column("user_id", sa.String(24), nullable=False),
        sa.Column("mid", sa.String(24), nullable=False),
        sa.Column("action", sa.String(16), nullable=False),
        sa.Column("data", sa.Text(), nullable=False),
        sa.Column("created_ms", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], name=op.f("fk_message_events_user_id_users"), ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_message_events")),
    )
    op.create_index("ix_message_events_user_id_mid_created_ms", "message_events", ["user_id", "mid", "created_ms"])

    op.create_table(
        "dkim_keys",
        sa.Column("domain", sa.String(253), nullable=False),
        sa.Column("selector", sa.String(63), nullable=False),
        sa.Column("algorithm", sa.String(32), nullable=False),
        sa.Column("private_key_pem", sa.Text(), nullable=False),
        sa.Column("created_ms", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("domain", name=op.f("pk_dkim_keys")),
    )


def downgrade() -> None:
    op.drop_table("dkim_keys")
    op.drop_index("ix_message_events_user_id_mid_created_ms", "message_events")
    op.drop_table("message_events")
    op.drop_index("ix_outbound_queue_id", "outbound")
    op.drop_index("ix_outbound_user_id_created_ms", "outbound")
    op.drop_index("ix_outbound_state_next_attempt_ms", "outbound")
    op.drop_table("outbound")
    with op.batch_alter_table("messages") as batch:
        batch.drop_index("ix_messages_user_id_mid")
        batch.drop_column("prefix")
        batch.drop_column("mid")
