"""message read indexes: one (user_id, <filter>, sent_at, id) per GET /api/messages filter

Revision ID: 0010
Revises: 0009

Without them a filtered page walks the owner's rows newest first until it has found a page
(a small chat or a thread at 1M messages: 0.4-0.7 s on SQLite). The thread index is partial:
most messages are in no thread.
"""

from alembic import op
import sqlalchemy as sa

revision = '0010'
down_revision = '0009'
branch_labels = None
depends_on = None

INDEXES = [
    ("ix_messages_user_chat_sent", "chat_id"),
    ("ix_messages_user_account_sent", "account_id"),
    ("ix_messages_user_platform_sent", "platform"),
    ("ix_messages_user_sender_sent", "sender_id"),
]


def upgrade() -> None:
    for name, column in INDEXES:
        op.create_index(name, 'messages', ['user_id', column, 'sent_at', 'id'], unique=False)
    op.create_index(
        'ix_messages_user_thread_sent', 'messages', ['user_id', 'thread_id', 'sent_at', 'id'], unique=False,
        sqlite_where=sa.text('thread_id IS NOT NULL'), postgresql_where=sa.text('thread_id IS NOT NULL'),
    )


def downgrade() -> None:
    op.drop_index('ix_messages_user_thread_sent', table_name='messages')
    for name, _ in reversed(INDEXES):
        op.drop_index(name, table_name='messages')
