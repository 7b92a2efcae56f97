"""one namespace of addresses: address_claims, filled from the hosted addresses,
aliases, deleted aliases and reverse aliases that exist

Revision ID: 0007
Revises: 0011

Where two rows already hold one address (possible before this table existed: an
admin address made after an alias with that address, say), the hosted address wins
the claim (the router delivers it locally first), then the alias, the deleted alias
and the reverse alias; the others stay as they are, unclaimed, and are listed in the
migration's log so that the operator can settle them.
"""

import logging

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0011"
branch_labels = None
depends_on = None

log = logging.getLogger("alembic.runtime.migration")

# (kind, source table, key column, user column), in the order that wins a shared key.
_SOURCES = (
    ("address", "addresses", "address_key", "user_id"),
    ("alias", "aliases", "email_key", "user_id"),
    ("deleted_alias", "deleted_aliases", "email_key", "user_id"),
    ("reverse_alias", "contacts", "reverse_alias_key", "user_id"),
)


def upgrade() -> None:
    op.create_table(
        "address_claims",
        sa.Column("address_key", sa.Text(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("user_id", sa.String(length=24), nullable=True),
        sa.Column("created_ms", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("address_key", name=op.f("pk_address_claims")),
    )
    with op.batch_alter_table("address_claims", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_address_claims_user_id"), ["user_id"], unique=False
        )

    bind = op.get_bind()
    now = "CAST(0 AS BIGINT)"
    for kind, table, key, user in _SOURCES:
        bind.execute(
            sa.text(
                f"INSERT INTO address_claims (address_key, kind, user_id, created_ms) "
                f"SELECT s.{key}, '{kind}', MIN(s.{user}), {now} FROM {table} s "
                f"WHERE NOT EXISTS (SELECT 1 FROM address_claims c WHERE c.address_key = s.{key}) "
                f"GROUP BY s.{key}"
            )
        )
    for kind, table, key, _user in _SOURCES:
        shared = (
            bind.execute(
                sa.text(
                    f"SELECT s.{key} FROM {table} s JOIN address_claims c ON c.address_key = s.{key} WHERE c.kind <> '{kind}'"
                )
            )
            .scalars()
            .all()
        )
        for address in shared:
            log.warning(
                "address_claims: %s is both a %s and held by another kind; the claim went to the other",
                address,
                kind,
            )


def downgrade() -> None:
    with op.batch_alter_table("address_claims", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_address_claims_user_id"))
    op.drop_table("address_claims")
