"""message embeddings: one vector per message for hybrid search in the AI module

Revision ID: 0002
Revises: 0001
"""

from alembic import op
import sqlalchemy as sa

revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('message_embeddings',
    sa.Column('message_id', sa.String(length=40), nullable=False),
    sa.Column('user_id', sa.String(length=40), nullable=False),
    sa.Column('model', sa.String(length=100), nullable=False),
    sa.Column('dims', sa.Integer(), nullable=False),
    sa.Column('vector', sa.LargeBinary(), nullable=False),
    sa.Column('created_at', sa.BigInteger(), nullable=False),
    sa.ForeignKeyConstraint(['message_id'], ['messages.id'], name=op.f('fk_message_embeddings_message_id_messages'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_message_embeddings_user_id_users'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('message_id', name=op.f('pk_message_embeddings'))
    )
    with op.batch_alter_table('message_embeddings', schema=None) as batch_op:
        batch_op.create_index('ix_message_embeddings_user_model', ['user_id', 'model'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('message_embeddings', schema=None) as batch_op:
        batch_op.drop_index('ix_message_embeddings_user_model')
    op.drop_table('message_embeddings')
