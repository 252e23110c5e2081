"""insights: one row per (owner, chat) with what the chat asks of the person (issue 10)

Revision ID: 0005
Revises: 0004
"""

from alembic import op
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None

JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def upgrade() -> None:
    op.create_table('insights',
    sa.Column('id', sa.String(length=40), nullable=False),
    sa.Column('user_id', sa.String(length=40), nullable=False),
    sa.Column('account_id', sa.String(length=40), nullable=True),
    sa.Column('platform', sa.String(length=40), nullable=False),
    sa.Column('chat_id', sa.String(length=500), nullable=False),
    sa.Column('chat_name', sa.String(length=500), nullable=True),
    sa.Column('dedupe_key', sa.String(length=600), nullable=False),
    sa.Column('title', sa.Text(), nullable=False),
    sa.Column('description', sa.Text(), nullable=False),
    sa.Column('importance', sa.String(length=10), nullable=False),
    sa.Column('urgency', sa.String(length=10), nullable=False),
    sa.Column('categories', JSON, nullable=False),
    sa.Column('people', JSON, nullable=False),
    sa.Column('my_tasks', JSON, nullable=False),
    sa.Column('waiting_for_me', JSON, nullable=False),
    sa.Column('waiting_for_others', JSON, nullable=False),
    sa.Column('next_actions', JSON, nullable=False),
    sa.Column('mentions', JSON, nullable=False),
    sa.Column('is_unreplied', sa.Boolean(), server_default=sa.false(), nullable=False),
    sa.Column('due_date', sa.BigInteger(), nullable=True),
    sa.Column('source_message_ids', JSON, nullable=False),
    sa.Column('method', sa.String(length=20), nullable=False),
    sa.Column('model', sa.String(length=200), nullable=True),
    sa.Column('as_of', sa.BigInteger(), nullable=False),
    sa.Column('last_seq', sa.BigInteger(), server_default='0', nullable=False),
    sa.Column('created_at', sa.BigInteger(), nullable=False),
    sa.Column('updated_at', sa.BigInteger(), nullable=False),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_insights_user_id_users'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_insights')),
    sa.UniqueConstraint('user_id', 'dedupe_key', name='uq_insights_user_dedupe')
    )
    with op.batch_alter_table('insights', schema=None) as batch_op:
        batch_op.create_index('ix_insights_user_updated', ['user_id', 'updated_at'], unique=False)
        batch_op.create_index('ix_insights_user_chat', ['user_id', 'chat_id'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('insights', schema=None) as batch_op:
        batch_op.drop_index('ix_insights_user_chat')
        batch_op.drop_index('ix_insights_user_updated')
    op.drop_table('insights')
