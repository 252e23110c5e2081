"""insight brief categories and insight tabs (issue 10, second half)

Revision ID: 0006
Revises: 0005
"""

from alembic import op
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None

JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def upgrade() -> None:
    op.create_table('insight_brief',
    sa.Column('user_id', sa.String(length=40), nullable=False),
    sa.Column('insight_id', sa.String(length=40), nullable=False),
    sa.Column('category', sa.String(length=10), nullable=False),
    sa.Column('source', sa.String(length=10), nullable=False),
    sa.Column('pinned', sa.Boolean(), server_default=sa.false(), nullable=False),
    sa.Column('unpinned_at', sa.BigInteger(), nullable=True),
    sa.Column('updated_at', sa.BigInteger(), nullable=False),
    sa.ForeignKeyConstraint(['insight_id'], ['insights.id'], name=op.f('fk_insight_brief_insight_id_insights'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_insight_brief_user_id_users'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('user_id', 'insight_id', name=op.f('pk_insight_brief'))
    )
    op.create_table('insight_tabs',
    sa.Column('id', sa.String(length=40), nullable=False),
    sa.Column('user_id', sa.String(length=40), nullable=False),
    sa.Column('name', sa.String(length=100), nullable=False),
    sa.Column('filter', JSON, nullable=False),
    sa.Column('enabled', sa.Boolean(), server_default=sa.true(), nullable=False),
    sa.Column('position', sa.Integer(), server_default='0', nullable=False),
    sa.Column('created_at', sa.BigInteger(), nullable=False),
    sa.Column('updated_at', sa.BigInteger(), nullable=False),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_insight_tabs_user_id_users'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_insight_tabs'))
    )
    with op.batch_alter_table('insight_tabs', schema=None) as batch_op:
        batch_op.create_index('ix_insight_tabs_user_position', ['user_id', 'position'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('insight_tabs', schema=None) as batch_op:
        batch_op.drop_index('ix_insight_tabs_user_position')
    op.drop_table('insight_tabs')
    op.drop_table('insight_brief')
