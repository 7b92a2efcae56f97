"""mail rules: filters, autoreplies, the autoreply interval per sender, and the
outbound queue's non-address forward targets

Revision ID: 0009
Revises: 0010
"""

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "filters",
        sa.Column("id", sa.String(length=24), nullable=False),
        sa.Column("user_id", sa.String(length=24), nullable=False),
        sa.Column("name", sa.Text(), server_default="", nullable=False),
        sa.Column("query", sa.Text(), nullable=False),
        sa.Column("action", sa.Text(), nullable=False),
        sa.Column(
            "disabled", sa.Boolean(), server_default=sa.text("false"), nullable=False
        ),
        sa.Column("created_ms", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name=op.f("fk_filters_user_id_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_filters")),
    )
    with op.batch_alter_table("filters", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_filters_user_id_id"), ["user_id", "id"], unique=False
        )
    op.create_table(
        "autoreplies",
        sa.Column("user_id", sa.String(length=24), nullable=False),
        sa.Column(
            "status", sa.Boolean(), server_default=sa.text("false"), nullable=False
        ),
        sa.Column("name", sa.Text(), server_default="", nullable=False),
        sa.Column("subject", sa.Text(), server_default="", nullable=False),
        sa.Column("text", sa.Text(), server_default="", nullable=False),
        sa.Column("html", sa.Text(), server_default="", nullable=False),
        sa.Column("start_ms", sa.BigInteger(), nullable=True),
        sa.Column("end_ms", sa.BigInteger(), nullable=True),
        sa.Column("created_ms", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name=op.f("fk_autoreplies_user_id_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("user_id", name=op.f("pk_autoreplies")),
    )
    op.create_table(
        "autoreply_sent",
        sa.Column("user_id", sa.String(length=24), nullable=False),
        sa.Column("sender", sa.Text(), nullable=False),
        sa.Column("sent_ms", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name=op.f("fk_autoreply_sent_user_id_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("user_id", "sender", name=op.f("pk_autoreply_sent")),
    )
    with op.batch_alter_table("outbound", schema=None) as batch_op:
        batch_op.add_column(sa.Column("target", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("outbound", schema=None) as batch_op:
        batch_op.drop_column("target")
    op.drop_table("autoreply_sent")
    op.drop_table("autoreplies")
    with op.batch_alter_table("filters", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_filters_user_id_id"))
    op.drop_table("filters")
