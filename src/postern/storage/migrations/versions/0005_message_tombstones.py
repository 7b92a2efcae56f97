"""message tombstones: UIDs expunged from a folder with their MODSEQ (IMAP QRESYNC)

Revision ID: 0005
Revises: 0004
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('message_tombstones',
    sa.Column('folder_id', sa.String(length=24), nullable=False),
    sa.Column('uid', sa.BigInteger(), nullable=False),
    sa.Column('user_id', sa.String(length=24), nullable=False),
    sa.Column('modseq', sa.BigInteger(), nullable=False),
    sa.ForeignKeyConstraint(['folder_id'], ['folders.id'], name=op.f('fk_message_tombstones_folder_id_folders'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_message_tombstones_user_id_users'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('folder_id', 'uid', name=op.f('pk_message_tombstones'))
    )
    with op.batch_alter_table('message_tombstones', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_message_tombstones_folder_id_modseq'), ['folder_id', 'modseq'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('message_tombstones', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_message_tombstones_folder_id_modseq'))

    op.drop_table('message_tombstones')
