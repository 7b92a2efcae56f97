"""proof of address ownership: email validation sessions, proven addresses, the
identity service's accounts and tokens; outbound rows of no user

Revision ID: 0010
Revises: 0006
"""

import sqlalchemy as sa
from alembic import op


revision = '0010'
down_revision = '0006'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('validation_sessions',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('address', sa.Text(), nullable=False),
    sa.Column('address_key', sa.Text(), nullable=False),
    sa.Column('client_secret', sa.String(length=255), nullable=False),
    sa.Column('token_salt', sa.String(length=32), nullable=False),
    sa.Column('send_attempt', sa.BigInteger(), nullable=True),
    sa.Column('next_link', sa.Text(), nullable=True),
    sa.Column('user_id', sa.String(length=24), nullable=True),
    sa.Column('created_ms', sa.BigInteger(), nullable=False),
    sa.Column('mtime_ms', sa.BigInteger(), nullable=False),
    sa.Column('validated_ms', sa.BigInteger(), nullable=True),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_validation_sessions_user_id_users'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_validation_sessions')),
    sqlite_autoincrement=True,
    )
    with op.batch_alter_table('validation_sessions', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_validation_sessions_address_key_client_secret'), ['address_key', 'client_secret'], unique=True)
        batch_op.create_index(batch_op.f('ix_validation_sessions_mtime_ms'), ['mtime_ms'], unique=False)
        batch_op.create_index(batch_op.f('ix_validation_sessions_user_id'), ['user_id'], unique=False)

    op.create_table('proven_addresses',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('user_id', sa.String(length=24), nullable=False),
    sa.Column('address', sa.Text(), nullable=False),
    sa.Column('address_key', sa.Text(), nullable=False),
    sa.Column('method', sa.String(length=16), nullable=False),
    sa.Column('proven_ms', sa.BigInteger(), nullable=False),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_proven_addresses_user_id_users'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_proven_addresses'))
    )
    with op.batch_alter_table('proven_addresses', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_proven_addresses_user_id_address_key'), ['user_id', 'address_key'], unique=True)

    op.create_table('identity_accounts',
    sa.Column('matrix_user_id', sa.String(length=255), nullable=False),
    sa.Column('accepted_terms', sa.Text(), server_default='', nullable=False),
    sa.Column('created_ms', sa.BigInteger(), nullable=False),
    sa.PrimaryKeyConstraint('matrix_user_id', name=op.f('pk_identity_accounts'))
    )
    op.create_table('identity_tokens',
    sa.Column('token_digest', sa.String(length=64), nullable=False),
    sa.Column('matrix_user_id', sa.String(length=255), nullable=False),
    sa.Column('created_ms', sa.BigInteger(), nullable=False),
    sa.ForeignKeyConstraint(['matrix_user_id'], ['identity_accounts.matrix_user_id'], name=op.f('fk_identity_tokens_matrix_user_id_identity_accounts'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('token_digest', name=op.f('pk_identity_tokens'))
    )
    with op.batch_alter_table('identity_tokens', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_identity_tokens_matrix_user_id'), ['matrix_user_id'], unique=False)

    # The identity service's mail belongs to no user.
    with op.batch_alter_table('outbound', schema=None) as batch_op:
        batch_op.alter_column('user_id', existing_type=sa.String(length=24), nullable=True)


def downgrade() -> None:
    with op.batch_alter_table('outbound', schema=None) as batch_op:
        batch_op.alter_column('user_id', existing_type=sa.String(length=24), nullable=False)
    with op.batch_alter_table('identity_tokens', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_identity_tokens_matrix_user_id'))
    op.drop_table('identity_tokens')
    op.drop_table('identity_accounts')
    with op.batch_alter_table('proven_addresses', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_proven_addresses_user_id_address_key'))
    op.drop_table('proven_addresses')
    with op.batch_alter_table('validation_sessions', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_validation_sessions_user_id'))
        batch_op.drop_index(batch_op.f('ix_validation_sessions_mtime_ms'))
        batch_op.drop_index(batch_op.f('ix_validation_sessions_address_key_client_secret'))
    op.drop_table('validation_sessions')
