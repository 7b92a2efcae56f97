"""hosted domains added by the operator ahead of their first address

Revision ID: 0015
Revises: 0007
"""

import sqlalchemy as sa
from alembic import op

revision = "0015"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "hosted_domains",
        sa.Column("domain", sa.String(length=253), nullable=False),
        sa.Column("created_ms", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("domain", name=op.f("pk_hosted_domains")),
    )


def downgrade() -> None:
    op.drop_table("hosted_domains")
