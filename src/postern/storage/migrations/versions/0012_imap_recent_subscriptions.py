"""IMAP: the \\Recent claim of each folder, subscriptions to names that are no folder

Revision ID: 0012
Revises: 0009
"""

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "imap_recent",
        sa.Column("folder_id", sa.String(length=24), nullable=False),
        sa.Column(
            "claimed_uid", sa.BigInteger(), server_default=sa.text("0"), nullable=False
        ),
        sa.ForeignKeyConstraint(
            ["folder_id"],
            ["folders.id"],
            name=op.f("fk_imap_recent_folder_id_folders"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("folder_id", name=op.f("pk_imap_recent")),
    )
    op.create_table(
        "imap_subscriptions",
        sa.Column("user_id", sa.String(length=24), nullable=False),
        sa.Column("path", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name=op.f("fk_imap_subscriptions_user_id_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("user_id", "path", name=op.f("pk_imap_subscriptions")),
    )


def downgrade() -> None:
    op.drop_table("imap_subscriptions")
    op.drop_table("imap_recent")
