"""accounts and security: 2FA, application passwords, the authentication log, API keys,
mailed codes, rate limits, profile pictures, forwarding mailboxes, the account email

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('rate_limits',
    sa.Column('key', sa.String(length=255), nullable=False),
    sa.Column('window_start_ms', sa.BigInteger(), nullable=False),
    sa.Column('count', sa.Integer(), nullable=False),
    sa.Column('expires_ms', sa.BigInteger(), nullable=False),
    sa.PrimaryKeyConstraint('key', name=op.f('pk_rate_limits'))
    )
    with op.batch_alter_table('rate_limits', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_rate_limits_expires_ms'), ['expires_ms'], unique=False)

    op.create_table('account_codes',
    sa.Column('id', sa.String(length=24), nullable=False),
    sa.Column('user_id', sa.String(length=24), nullable=False),
    sa.Column('purpose', sa.String(length=32), nullable=False),
    sa.Column('code_digest', sa.String(length=64), nullable=False),
    sa.Column('attempts', sa.Integer(), server_default=sa.text('0'), nullable=False),
    sa.Column('created_ms', sa.BigInteger(), nullable=False),
    sa.Column('expires_ms', sa.BigInteger(), nullable=False),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_account_codes_user_id_users'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_account_codes'))
    )
    with op.batch_alter_table('account_codes', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_account_codes_code_digest'), ['code_digest'], unique=False)
        batch_op.create_index(batch_op.f('ix_account_codes_expires_ms'), ['expires_ms'], unique=False)
        batch_op.create_index(batch_op.f('ix_account_codes_user_id_purpose'), ['user_id', 'purpose'], unique=False)

    op.create_table('api_keys',
    sa.Column('id', sa.String(length=24), nullable=False),
    sa.Column('user_id', sa.String(length=24), nullable=False),
    sa.Column('name', sa.Text(), nullable=False),
    sa.Column('key_digest', sa.String(length=64), nullable=False),
    sa.Column('created_ms', sa.BigInteger(), nullable=False),
    sa.Column('last_used_ms', sa.BigInteger(), nullable=True),
    sa.Column('sudo_until_ms', sa.BigInteger(), nullable=True),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_api_keys_user_id_users'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_api_keys')),
    sa.UniqueConstraint('key_digest', name=op.f('uq_api_keys_key_digest'))
    )
    with op.batch_alter_table('api_keys', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_api_keys_user_id'), ['user_id'], unique=False)

    op.create_table('application_passwords',
    sa.Column('id', sa.String(length=24), nullable=False),
    sa.Column('user_id', sa.String(length=24), nullable=False),
    sa.Column('description', sa.Text(), nullable=False),
    sa.Column('scopes', sa.Text(), nullable=False),
    sa.Column('password_digest', sa.String(length=64), nullable=False),
    sa.Column('created_ms', sa.BigInteger(), nullable=False),
    sa.Column('last_used_ms', sa.BigInteger(), nullable=True),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_application_passwords_user_id_users'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_application_passwords')),
    sa.UniqueConstraint('password_digest', name=op.f('uq_application_passwords_password_digest'))
    )
    with op.batch_alter_table('application_passwords', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_application_passwords_user_id_created_ms'), ['user_id', 'created_ms'], unique=False)

    op.create_table('authlog',
    sa.Column('id', sa.String(length=24), nullable=False),
    sa.Column('user_id', sa.String(length=24), nullable=False),
    sa.Column('action', sa.String(length=64), nullable=False),
    sa.Column('result', sa.String(length=32), nullable=False),
    sa.Column('protocol', sa.String(length=64), nullable=True),
    sa.Column('sess', sa.String(length=255), nullable=True),
    sa.Column('ip', sa.String(length=64), nullable=True),
    sa.Column('data', sa.Text(), server_default='{}', nullable=False),
    sa.Column('created_ms', sa.BigInteger(), nullable=False),
    sa.Column('expires_ms', sa.BigInteger(), nullable=False),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_authlog_user_id_users'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_authlog'))
    )
    with op.batch_alter_table('authlog', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_authlog_expires_ms'), ['expires_ms'], unique=False)
        batch_op.create_index(batch_op.f('ix_authlog_user_id_created_ms'), ['user_id', 'created_ms'], unique=False)

    op.create_table('mailboxes',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('user_id', sa.String(length=24), nullable=False),
    sa.Column('email', sa.Text(), nullable=False),
    sa.Column('email_key', sa.Text(), nullable=False),
    sa.Column('verified', sa.Boolean(), server_default=sa.text('false'), nullable=False),
    sa.Column('is_default', sa.Boolean(), server_default=sa.text('false'), nullable=False),
    sa.Column('created_ms', sa.BigInteger(), nullable=False),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_mailboxes_user_id_users'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_mailboxes'))
    )
    with op.batch_alter_table('mailboxes', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_mailboxes_user_id_email_key'), ['user_id', 'email_key'], unique=True)
        batch_op.create_index('uq_mailboxes_one_default', ['user_id'], unique=True, sqlite_where=sa.text('is_default'), postgresql_where=sa.text('is_default'))

    op.create_table('profile_pictures',
    sa.Column('user_id', sa.String(length=24), nullable=False),
    sa.Column('token', sa.String(length=32), nullable=False),
    sa.Column('content_type', sa.String(length=64), nullable=False),
    sa.Column('data', sa.LargeBinary(), nullable=False),
    sa.Column('updated_ms', sa.BigInteger(), nullable=False),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_profile_pictures_user_id_users'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('user_id', name=op.f('pk_profile_pictures'))
    )
    op.create_table('user_2fa',
    sa.Column('user_id', sa.String(length=24), nullable=False),
    sa.Column('totp_secret', sa.Text(), nullable=True),
    sa.Column('totp_enabled', sa.Boolean(), server_default=sa.text('false'), nullable=False),
    sa.Column('totp_last_step', sa.BigInteger(), server_default=sa.text('0'), nullable=False),
    sa.Column('updated_ms', sa.BigInteger(), nullable=False),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_user_2fa_user_id_users'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('user_id', name=op.f('pk_user_2fa'))
    )
    with op.batch_alter_table('users', schema=None) as batch_op:
        batch_op.add_column(sa.Column('email', sa.Text(), nullable=True))
        batch_op.add_column(sa.Column('email_key', sa.Text(), nullable=True))
        batch_op.add_column(sa.Column('premium', sa.Boolean(), server_default=sa.text('false'), nullable=False))
        batch_op.create_unique_constraint(batch_op.f('uq_users_email_key'), ['email_key'])


def downgrade() -> None:
    with op.batch_alter_table('users', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('uq_users_email_key'), type_='unique')
        batch_op.drop_column('premium')
        batch_op.drop_column('email_key')
        batch_op.drop_column('email')

    op.drop_table('user_2fa')
    op.drop_table('profile_pictures')
    with op.batch_alter_table('mailboxes', schema=None) as batch_op:
        batch_op.drop_index('uq_mailboxes_one_default', sqlite_where=sa.text('is_default'), postgresql_where=sa.text('is_default'))
        batch_op.drop_index(batch_op.f('ix_mailboxes_user_id_email_key'))

    op.drop_table('mailboxes')
    with op.batch_alter_table('authlog', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_authlog_user_id_created_ms'))
        batch_op.drop_index(batch_op.f('ix_authlog_expires_ms'))

    op.drop_table('authlog')
    with op.batch_alter_table('application_passwords', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_application_passwords_user_id_created_ms'))

    op.drop_table('application_passwords')
    with op.batch_alter_table('api_keys', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_api_keys_user_id'))

    op.drop_table('api_keys')
    with op.batch_alter_table('account_codes', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_account_codes_user_id_purpose'))
        batch_op.drop_index(batch_op.f('ix_account_codes_expires_ms'))
        batch_op.drop_index(batch_op.f('ix_account_codes_code_digest'))

    op.drop_table('account_codes')
    with op.batch_alter_table('rate_limits', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_rate_limits_expires_ms'))

    op.drop_table('rate_limits')
