"""email aliases: aliases, their mailboxes, contacts and reverse aliases, activities,
custom domains, deleted aliases, notifications, the user API settings

Revision ID: 0006
Revises: 0005
"""

import sqlalchemy as sa
from alembic import op


revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('deleted_aliases',
    sa.Column('email_key', sa.Text(), nullable=False),
    sa.Column('email', sa.Text(), nullable=False),
    sa.Column('user_id', sa.String(length=24), nullable=True),
    sa.Column('custom_domain_id', sa.Integer(), nullable=True),
    sa.Column('deleted_ms', sa.BigInteger(), nullable=False),
    sa.PrimaryKeyConstraint('email_key', name=op.f('pk_deleted_aliases'))
    )
    with op.batch_alter_table('deleted_aliases', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_deleted_aliases_custom_domain_id_deleted_ms'), ['custom_domain_id', 'deleted_ms'], unique=False)

    op.create_table('custom_domains',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('user_id', sa.String(length=24), nullable=False),
    sa.Column('domain', sa.String(length=253), nullable=False),
    sa.Column('name', sa.Text(), nullable=True),
    sa.Column('ownership_token', sa.String(length=64), nullable=False),
    sa.Column('verified', sa.Boolean(), server_default=sa.text('false'), nullable=False),
    sa.Column('mx_ok', sa.Boolean(), server_default=sa.text('false'), nullable=False),
    sa.Column('spf_ok', sa.Boolean(), server_default=sa.text('false'), nullable=False),
    sa.Column('dkim_ok', sa.Boolean(), server_default=sa.text('false'), nullable=False),
    sa.Column('dmarc_ok', sa.Boolean(), server_default=sa.text('false'), nullable=False),
    sa.Column('check_report', sa.Text(), server_default='{}', nullable=False),
    sa.Column('checked_ms', sa.BigInteger(), nullable=True),
    sa.Column('catch_all', sa.Boolean(), server_default=sa.text('false'), nullable=False),
    sa.Column('random_prefix_generation', sa.Boolean(), server_default=sa.text('false'), nullable=False),
    sa.Column('created_ms', sa.BigInteger(), nullable=False),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_custom_domains_user_id_users'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_custom_domains')),
    sa.UniqueConstraint('domain', name=op.f('uq_custom_domains_domain'))
    )
    with op.batch_alter_table('custom_domains', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_custom_domains_user_id'), ['user_id'], unique=False)

    op.create_table('notifications',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('user_id', sa.String(length=24), nullable=False),
    sa.Column('title', sa.Text(), nullable=False),
    sa.Column('message', sa.Text(), nullable=False),
    sa.Column('read', sa.Boolean(), server_default=sa.text('false'), nullable=False),
    sa.Column('created_ms', sa.BigInteger(), nullable=False),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_notifications_user_id_users'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_notifications'))
    )
    with op.batch_alter_table('notifications', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_notifications_user_id_id'), ['user_id', 'id'], unique=False)

    op.create_table('aliases',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('user_id', sa.String(length=24), nullable=False),
    sa.Column('email', sa.Text(), nullable=False),
    sa.Column('email_key', sa.Text(), nullable=False),
    sa.Column('custom_domain_id', sa.Integer(), nullable=True),
    sa.Column('mailbox_id', sa.Integer(), nullable=False),
    sa.Column('name', sa.Text(), nullable=True),
    sa.Column('note', sa.Text(), nullable=True),
    sa.Column('hostname', sa.Text(), nullable=True),
    sa.Column('enabled', sa.Boolean(), server_default=sa.text('true'), nullable=False),
    sa.Column('pinned', sa.Boolean(), server_default=sa.text('false'), nullable=False),
    sa.Column('disable_pgp', sa.Boolean(), server_default=sa.text('false'), nullable=False),
    sa.Column('nb_forward', sa.Integer(), server_default=sa.text('0'), nullable=False),
    sa.Column('nb_block', sa.Integer(), server_default=sa.text('0'), nullable=False),
    sa.Column('nb_reply', sa.Integer(), server_default=sa.text('0'), nullable=False),
    sa.Column('nb_bounce', sa.Integer(), server_default=sa.text('0'), nullable=False),
    sa.Column('latest_activity_ms', sa.BigInteger(), nullable=False),
    sa.Column('latest_activity_action', sa.String(length=8), nullable=True),
    sa.Column('latest_contact_id', sa.Integer(), nullable=True),
    sa.Column('created_ms', sa.BigInteger(), nullable=False),
    sa.ForeignKeyConstraint(['custom_domain_id'], ['custom_domains.id'], name=op.f('fk_aliases_custom_domain_id_custom_domains'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['mailbox_id'], ['mailboxes.id'], name=op.f('fk_aliases_mailbox_id_mailboxes')),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_aliases_user_id_users'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_aliases')),
    sa.UniqueConstraint('email_key', name=op.f('uq_aliases_email_key'))
    )
    with op.batch_alter_table('aliases', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_aliases_custom_domain_id'), ['custom_domain_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_aliases_mailbox_id'), ['mailbox_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_aliases_user_id_hostname'), ['user_id', 'hostname'], unique=False)
        batch_op.create_index(batch_op.f('ix_aliases_user_id_pinned_latest_activity_ms_id'), ['user_id', 'pinned', 'latest_activity_ms', 'id'], unique=False)

    op.create_table('custom_domain_mailboxes',
    sa.Column('domain_id', sa.Integer(), nullable=False),
    sa.Column('mailbox_id', sa.Integer(), nullable=False),
    sa.Column('user_id', sa.String(length=24), nullable=False),
    sa.ForeignKeyConstraint(['domain_id'], ['custom_domains.id'], name=op.f('fk_custom_domain_mailboxes_domain_id_custom_domains'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['mailbox_id'], ['mailboxes.id'], name=op.f('fk_custom_domain_mailboxes_mailbox_id_mailboxes'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_custom_domain_mailboxes_user_id_users'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('domain_id', 'mailbox_id', name=op.f('pk_custom_domain_mailboxes'))
    )
    with op.batch_alter_table('custom_domain_mailboxes', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_custom_domain_mailboxes_mailbox_id'), ['mailbox_id'], unique=False)

    op.create_table('alias_mailboxes',
    sa.Column('alias_id', sa.Integer(), nullable=False),
    sa.Column('mailbox_id', sa.Integer(), nullable=False),
    sa.Column('user_id', sa.String(length=24), nullable=False),
    sa.ForeignKeyConstraint(['alias_id'], ['aliases.id'], name=op.f('fk_alias_mailboxes_alias_id_aliases'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['mailbox_id'], ['mailboxes.id'], name=op.f('fk_alias_mailboxes_mailbox_id_mailboxes'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_alias_mailboxes_user_id_users'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('alias_id', 'mailbox_id', name=op.f('pk_alias_mailboxes'))
    )
    with op.batch_alter_table('alias_mailboxes', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_alias_mailboxes_mailbox_id'), ['mailbox_id'], unique=False)

    op.create_table('contacts',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('user_id', sa.String(length=24), nullable=False),
    sa.Column('alias_id', sa.Integer(), nullable=False),
    sa.Column('email', sa.Text(), nullable=False),
    sa.Column('email_key', sa.Text(), nullable=False),
    sa.Column('name', sa.Text(), nullable=True),
    sa.Column('reverse_alias', sa.Text(), nullable=False),
    sa.Column('reverse_alias_key', sa.Text(), nullable=False),
    sa.Column('block_forward', sa.Boolean(), server_default=sa.text('false'), nullable=False),
    sa.Column('created_ms', sa.BigInteger(), nullable=False),
    sa.Column('last_email_sent_ms', sa.BigInteger(), nullable=True),
    sa.ForeignKeyConstraint(['alias_id'], ['aliases.id'], name=op.f('fk_contacts_alias_id_aliases'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_contacts_user_id_users'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_contacts')),
    sa.UniqueConstraint('reverse_alias_key', name=op.f('uq_contacts_reverse_alias_key'))
    )
    with op.batch_alter_table('contacts', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_contacts_alias_id_email_key'), ['alias_id', 'email_key'], unique=True)
        batch_op.create_index(batch_op.f('ix_contacts_user_id'), ['user_id'], unique=False)

    op.create_table('alias_activities',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('user_id', sa.String(length=24), nullable=False),
    sa.Column('alias_id', sa.Integer(), nullable=False),
    sa.Column('contact_id', sa.Integer(), nullable=True),
    sa.Column('mailbox_id', sa.Integer(), nullable=True),
    sa.Column('action', sa.String(length=8), nullable=False),
    sa.Column('created_ms', sa.BigInteger(), nullable=False),
    sa.ForeignKeyConstraint(['alias_id'], ['aliases.id'], name=op.f('fk_alias_activities_alias_id_aliases'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['contact_id'], ['contacts.id'], name=op.f('fk_alias_activities_contact_id_contacts'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['mailbox_id'], ['mailboxes.id'], name=op.f('fk_alias_activities_mailbox_id_mailboxes'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_alias_activities_user_id_users'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_alias_activities'))
    )
    with op.batch_alter_table('alias_activities', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_alias_activities_alias_id_created_ms'), ['alias_id', 'created_ms'], unique=False)
        batch_op.create_index(batch_op.f('ix_alias_activities_user_id_action'), ['user_id', 'action'], unique=False)

    with op.batch_alter_table('account_codes', schema=None) as batch_op:
        batch_op.add_column(sa.Column('target', sa.Text(), nullable=True))

    with op.batch_alter_table('mailboxes', schema=None) as batch_op:
        batch_op.add_column(sa.Column('pending_email', sa.Text(), nullable=True))
        batch_op.add_column(sa.Column('pending_email_key', sa.Text(), nullable=True))
        batch_op.add_column(sa.Column('require_reply_authentication', sa.Boolean(), server_default=sa.text('false'), nullable=False))

    with op.batch_alter_table('users', schema=None) as batch_op:
        batch_op.add_column(sa.Column('alias_generator', sa.String(length=8), server_default='word', nullable=False))
        batch_op.add_column(sa.Column('random_alias_suffix', sa.String(length=16), server_default='word', nullable=False))
        batch_op.add_column(sa.Column('sender_format', sa.String(length=16), server_default='AT', nullable=False))
        batch_op.add_column(sa.Column('random_alias_default_domain', sa.Text(), nullable=True))
        batch_op.add_column(sa.Column('notification_emails', sa.Boolean(), server_default=sa.text('true'), nullable=False))



def downgrade() -> None:
    with op.batch_alter_table('users', schema=None) as batch_op:
        batch_op.drop_column('notification_emails')
        batch_op.drop_column('random_alias_default_domain')
        batch_op.drop_column('sender_format')
        batch_op.drop_column('random_alias_suffix')
        batch_op.drop_column('alias_generator')

    with op.batch_alter_table('mailboxes', schema=None) as batch_op:
        batch_op.drop_column('require_reply_authentication')
        batch_op.drop_column('pending_email_key')
        batch_op.drop_column('pending_email')

    with op.batch_alter_table('account_codes', schema=None) as batch_op:
        batch_op.drop_column('target')

    with op.batch_alter_table('alias_activities', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_alias_activities_user_id_action'))
        batch_op.drop_index(batch_op.f('ix_alias_activities_alias_id_created_ms'))

    op.drop_table('alias_activities')
    with op.batch_alter_table('contacts', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_contacts_user_id'))
        batch_op.drop_index(batch_op.f('ix_contacts_alias_id_email_key'))

    op.drop_table('contacts')
    with op.batch_alter_table('alias_mailboxes', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_alias_mailboxes_mailbox_id'))

    op.drop_table('alias_mailboxes')
    with op.batch_alter_table('custom_domain_mailboxes', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_custom_domain_mailboxes_mailbox_id'))

    op.drop_table('custom_domain_mailboxes')
    with op.batch_alter_table('aliases', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_aliases_user_id_pinned_latest_activity_ms_id'))
        batch_op.drop_index(batch_op.f('ix_aliases_user_id_hostname'))
        batch_op.drop_index(batch_op.f('ix_aliases_mailbox_id'))
        batch_op.drop_index(batch_op.f('ix_aliases_custom_domain_id'))

    op.drop_table('aliases')
    with op.batch_alter_table('notifications', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_notifications_user_id_id'))

    op.drop_table('notifications')
    with op.batch_alter_table('custom_domains', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_custom_domains_user_id'))

    op.drop_table('custom_domains')
    with op.batch_alter_table('deleted_aliases', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_deleted_aliases_custom_domain_id_deleted_ms'))

    op.drop_table('deleted_aliases')
