"""assistant chats, their messages, and characters (/api/chat)

Revision ID: 0009
Revises: 0008
"""

from alembic import op
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

revision = '0009'
down_revision = '0008'
branch_labels = None
depends_on = None

JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def upgrade() -> None:
    op.create_table('characters',
    sa.Column('id', sa.String(length=40), nullable=False),
    sa.Column('user_id', sa.String(length=40), nullable=False),
    sa.Column('name', sa.String(length=100), nullable=False),
    sa.Column('description', sa.String(length=500), nullable=True),
    sa.Column('avatar', sa.String(length=2048), nullable=True),
    sa.Column('system_prompt', sa.Text(), nullable=False),
    sa.Column('model', sa.String(length=200), nullable=True),
    sa.Column('created_at', sa.BigInteger(), nullable=False),
    sa.Column('updated_at', sa.BigInteger(), nullable=False),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_characters_user_id_users'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_characters'))
    )
    with op.batch_alter_table('characters', schema=None) as batch_op:
        batch_op.create_index('ix_characters_user_created', ['user_id', 'created_at'], unique=False)
    op.create_table('assistant_chats',
    sa.Column('id', sa.String(length=40), nullable=False),
    sa.Column('user_id', sa.String(length=40), nullable=False),
    sa.Column('title', sa.String(length=200), nullable=False),
    sa.Column('character_id', sa.String(length=40), nullable=True),
    sa.Column('model', sa.String(length=200), nullable=True),
    sa.Column('message_count', sa.Integer(), server_default='0', nullable=False),
    sa.Column('created_at', sa.BigInteger(), nullable=False),
    sa.Column('updated_at', sa.BigInteger(), nullable=False),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_assistant_chats_user_id_users'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_assistant_chats'))
    )
    with op.batch_alter_table('assistant_chats', schema=None) as batch_op:
        batch_op.create_index('ix_assistant_chats_user_updated', ['user_id', 'updated_at'], unique=False)
    op.create_table('assistant_messages',
    sa.Column('id', sa.String(length=40), nullable=False),
    sa.Column('chat_id', sa.String(length=40), nullable=False),
    sa.Column('user_id', sa.String(length=40), nullable=False),
    sa.Column('seq', sa.Integer(), nullable=False),
    sa.Column('client_id', sa.String(length=100), nullable=True),
    sa.Column('role', sa.String(length=20), nullable=False),
    sa.Column('content', sa.Text(), nullable=False),
    sa.Column('meta', JSON, nullable=False),
    sa.Column('created_at', sa.BigInteger(), nullable=False),
    sa.ForeignKeyConstraint(['chat_id'], ['assistant_chats.id'], name=op.f('fk_assistant_messages_chat_id_assistant_chats'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_assistant_messages_user_id_users'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_assistant_messages'))
    )
    with op.batch_alter_table('assistant_messages', schema=None) as batch_op:
        batch_op.create_index('ix_assistant_messages_chat_seq', ['chat_id', 'seq'], unique=True)
        batch_op.create_index('ix_assistant_messages_chat_client_id', ['chat_id', 'client_id'], unique=True)


def downgrade() -> None:
    with op.batch_alter_table('assistant_messages', schema=None) as batch_op:
        batch_op.drop_index('ix_assistant_messages_chat_client_id')
        batch_op.drop_index('ix_assistant_messages_chat_seq')
    op.drop_table('assistant_messages')
    with op.batch_alter_table('assistant_chats', schema=None) as batch_op:
        batch_op.drop_index('ix_assistant_chats_user_updated')
    op.drop_table('assistant_chats')
    with op.batch_alter_table('characters', schema=None) as batch_op:
        batch_op.drop_index('ix_characters_user_created')
    op.drop_table('characters')
