"""initial schema: users, addresses, folders, messages, blobs, threads

Revision ID: 0001
Revises: 
Create Date: 2026-11-21 06:49:29.883740
"""

from alembic import op
import sqlalchemy as sa


revision = '0001'
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('blobs',
    sa.Column('key', sa.String(length=64), nullable=False),
    sa.Column('size', sa.BigInteger(), nullable=False),
    sa.Column('refcount', sa.Integer(), nullable=False),
    sa.Column('created_ms', sa.BigInteger(), nullable=False),
    sa.PrimaryKeyConstraint('key', name=op.f('pk_blobs'))
    )
    with op.batch_alter_table('blobs', schema=None) as batch_op:
        batch_op.create_index('ix_blobs_unreferenced', ['key'], unique=False, sqlite_where=sa.text('refcount <= 0'), postgresql_where=sa.text('refcount <= 0'))

    op.create_table('server_state',
    sa.Column('key', sa.String(length=64), nullable=False),
    sa.Column('value', sa.Text(), nullable=False),
    sa.PrimaryKeyConstraint('key', name=op.f('pk_server_state'))
    )
    op.create_table('users',
    sa.Column('id', sa.String(length=24), nullable=False),
    sa.Column('username', sa.String(length=128), nullable=False),
    sa.Column('name', sa.Text(), nullable=True),
    sa.Column('password_hash', sa.Text(), nullable=True),
    sa.Column('address', sa.Text(), nullable=True),
    sa.Column('language', sa.String(length=16), nullable=True),
    sa.Column('retention_ms', sa.BigInteger(), nullable=True),
    sa.Column('quota_allowed', sa.BigInteger(), nullable=False),
    sa.Column('storage_used', sa.BigInteger(), server_default=sa.text('0'), nullable=False),
    sa.Column('recipients_limit', sa.Integer(), nullable=False),
    sa.Column('forwards_limit', sa.Integer(), nullable=False),
    sa.Column('pub_key', sa.Text(), server_default='', nullable=False),
    sa.Column('encrypt_messages', sa.Boolean(), server_default=sa.text('(false)'), nullable=False),
    sa.Column('encrypt_forwarded', sa.Boolean(), server_default=sa.text('(false)'), nullable=False),
    sa.Column('activated', sa.Boolean(), server_default=sa.text('(true)'), nullable=False),
    sa.Column('disabled', sa.Boolean(), server_default=sa.text('(false)'), nullable=False),
    sa.Column('require_password_change', sa.Boolean(), server_default=sa.text('(false)'), nullable=False),
    sa.Column('created_ms', sa.BigInteger(), nullable=False),
    sa.CheckConstraint('storage_used >= 0', name=op.f('ck_users_storage_used_positive')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_users')),
    sa.UniqueConstraint('username', name=op.f('uq_users_username'))
    )
    op.create_table('addresses',
    sa.Column('id', sa.String(length=24), nullable=False),
    sa.Column('user_id', sa.String(length=24), nullable=False),
    sa.Column('address', sa.Text(), nullable=False),
    sa.Column('address_key', sa.Text(), nullable=False),
    sa.Column('main', sa.Boolean(), server_default=sa.text('(false)'), nullable=False),
    sa.Column('created_ms', sa.BigInteger(), nullable=False),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_addresses_user_id_users'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_addresses')),
    sa.UniqueConstraint('address_key', name=op.f('uq_addresses_address_key'))
    )
    with op.batch_alter_table('addresses', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_addresses_user_id'), ['user_id'], unique=False)
        batch_op.create_index('uq_addresses_one_main', ['user_id'], unique=True, sqlite_where=sa.text('main'), postgresql_where=sa.text('main'))

    op.create_table('folders',
    sa.Column('id', sa.String(length=24), nullable=False),
    sa.Column('user_id', sa.String(length=24), nullable=False),
    sa.Column('path', sa.Text(), nullable=False),
    sa.Column('special_use', sa.String(length=16), nullable=True),
    sa.Column('subscribed', sa.Boolean(), server_default=sa.text('(true)'), nullable=False),
    sa.Column('retention_ms', sa.BigInteger(), nullable=True),
    sa.Column('uidvalidity', sa.BigInteger(), nullable=False),
    sa.Column('uid_next', sa.BigInteger(), server_default=sa.text('1'), nullable=False),
    sa.Column('modseq', sa.BigInteger(), server_default=sa.text('1'), nullable=False),
    sa.Column('message_count', sa.Integer(), server_default=sa.text('0'), nullable=False),
    sa.Column('unseen_count', sa.Integer(), server_default=sa.text('0'), nullable=False),
    sa.Column('size_total', sa.BigInteger(), server_default=sa.text('0'), nullable=False),
    sa.Column('created_ms', sa.BigInteger(), nullable=False),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_folders_user_id_users'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_folders'))
    )
    with op.batch_alter_table('folders', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_folders_user_id_path'), ['user_id', 'path'], unique=True)

    op.create_table('threads',
    sa.Column('id', sa.String(length=24), nullable=False),
    sa.Column('user_id', sa.String(length=24), nullable=False),
    sa.Column('subject', sa.Text(), nullable=False),
    sa.Column('updated_ms', sa.BigInteger(), nullable=False),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_threads_user_id_users'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_threads'))
    )
    with op.batch_alter_table('threads', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_threads_user_id_subject'), ['user_id', 'subject'], unique=False)

    op.create_table('user_tags',
    sa.Column('user_id', sa.String(length=24), nullable=False),
    sa.Column('tag', sa.String(length=128), nullable=False),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_user_tags_user_id_users'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('user_id', 'tag', name=op.f('pk_user_tags'))
    )
    with op.batch_alter_table('user_tags', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_user_tags_tag'), ['tag'], unique=False)

    op.create_table('messages',
    sa.Column('folder_id', sa.String(length=24), nullable=False),
    sa.Column('uid', sa.BigInteger(), nullable=False),
    sa.Column('user_id', sa.String(length=24), nullable=False),
    sa.Column('blob_key', sa.String(length=64), nullable=False),
    sa.Column('size', sa.BigInteger(), nullable=False),
    sa.Column('internal_ms', sa.BigInteger(), nullable=False),
    sa.Column('modseq', sa.BigInteger(), nullable=False),
    sa.Column('seen', sa.Boolean(), server_default=sa.text('(false)'), nullable=False),
    sa.Column('flagged', sa.Boolean(), server_default=sa.text('(false)'), nullable=False),
    sa.Column('draft', sa.Boolean(), server_default=sa.text('(false)'), nullable=False),
    sa.Column('deleted', sa.Boolean(), server_default=sa.text('(false)'), nullable=False),
    sa.Column('answered', sa.Boolean(), server_default=sa.text('(false)'), nullable=False),
    sa.Column('keywords', sa.Text(), server_default='[]', nullable=False),
    sa.Column('thread_id', sa.String(length=24), nullable=False),
    sa.Column('from_name', sa.Text(), server_default='', nullable=False),
    sa.Column('from_address', sa.Text(), server_default='', nullable=False),
    sa.Column('subject', sa.Text(), server_default='', nullable=False),
    sa.Column('message_id', sa.Text(), nullable=True),
    sa.Column('date_ms', sa.BigInteger(), nullable=True),
    sa.Column('intro', sa.Text(), server_default='', nullable=False),
    sa.Column('has_attachments', sa.Boolean(), server_default=sa.text('(false)'), nullable=False),
    sa.Column('summary', sa.Text(), nullable=False),
    sa.Column('expires_ms', sa.BigInteger(), nullable=True),
    sa.ForeignKeyConstraint(['folder_id'], ['folders.id'], name=op.f('fk_messages_folder_id_folders'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_messages_user_id_users'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('folder_id', 'uid', name=op.f('pk_messages'))
    )
    with op.batch_alter_table('messages', schema=None) as batch_op:
        batch_op.create_index('ix_messages_expiring', ['expires_ms'], unique=False, sqlite_where=sa.text('expires_ms IS NOT NULL'), postgresql_where=sa.text('expires_ms IS NOT NULL'))
        batch_op.create_index(batch_op.f('ix_messages_folder_id_modseq'), ['folder_id', 'modseq'], unique=False)
        batch_op.create_index(batch_op.f('ix_messages_thread_id'), ['thread_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_messages_user_id_message_id'), ['user_id', 'message_id'], unique=False)

    op.create_table('thread_refs',
    sa.Column('user_id', sa.String(length=24), nullable=False),
    sa.Column('ref', sa.String(length=255), nullable=False),
    sa.Column('thread_id', sa.String(length=24), nullable=False),
    sa.ForeignKeyConstraint(['thread_id'], ['threads.id'], name=op.f('fk_thread_refs_thread_id_threads'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_thread_refs_user_id_users'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('user_id', 'ref', name=op.f('pk_thread_refs'))
    )
    with op.batch_alter_table('thread_refs', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_thread_refs_thread_id'), ['thread_id'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('thread_refs', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_thread_refs_thread_id'))

    op.drop_table('thread_refs')
    with op.batch_alter_table('messages', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_messages_user_id_message_id'))
        batch_op.drop_index(batch_op.f('ix_messages_thread_id'))
        batch_op.drop_index(batch_op.f('ix_messages_folder_id_modseq'))
        batch_op.drop_index('ix_messages_expiring', sqlite_where=sa.text('expires_ms IS NOT NULL'), postgresql_where=sa.text('expires_ms IS NOT NULL'))

    op.drop_table('messages')
    with op.batch_alter_table('user_tags', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_user_tags_tag'))

    op.drop_table('user_tags')
    with op.batch_alter_table('threads', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_threads_user_id_subject'))

    op.drop_table('threads')
    with op.batch_alter_table('folders', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_folders_user_id_path'))

    op.drop_table('folders')
    with op.batch_alter_table('addresses', schema=None) as batch_op:
        batch_op.drop_index('uq_addresses_one_main', sqlite_where=sa.text('main'), postgresql_where=sa.text('main'))
        batch_op.drop_index(batch_op.f('ix_addresses_user_id'))

    op.drop_table('addresses')
    op.drop_table('users')
    op.drop_table('server_state')
    with op.batch_alter_table('blobs', schema=None) as batch_op:
        batch_op.drop_index('ix_blobs_unreferenced', sqlite_where=sa.text('refcount <= 0'), postgresql_where=sa.text('refcount <= 0'))

    op.drop_table('blobs')
