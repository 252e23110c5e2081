"""RAG: documents, their chunks (text, position, vector), resumable chunked uploads;
message_embeddings indexed for the vector index sync

Revision ID: 0007
Revises: 0006
"""

from alembic import op
import sqlalchemy as sa

revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('rag_documents',
    sa.Column('id', sa.String(length=40), nullable=False),
    sa.Column('user_id', sa.String(length=40), nullable=False),
    sa.Column('job_id', sa.String(length=40), nullable=True),
    sa.Column('name', sa.String(length=255), nullable=False),
    sa.Column('content_type', sa.String(length=200), nullable=False),
    sa.Column('kind', sa.String(length=10), nullable=False),
    sa.Column('size_bytes', sa.BigInteger(), nullable=False),
    sa.Column('sha256', sa.String(length=64), nullable=False),
    sa.Column('status', sa.String(length=300), nullable=False),
    sa.Column('chunk_count', sa.Integer(), server_default='0', nullable=False),
    sa.Column('embedded_count', sa.Integer(), server_default='0', nullable=False),
    sa.Column('created_at', sa.BigInteger(), nullable=False),
    sa.Column('updated_at', sa.BigInteger(), nullable=False),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_rag_documents_user_id_users'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_rag_documents'))
    )
    with op.batch_alter_table('rag_documents', schema=None) as batch_op:
        batch_op.create_index('ix_rag_documents_user_created', ['user_id', 'created_at'], unique=False)
        batch_op.create_index('ix_rag_documents_status', ['status'], unique=False)
        batch_op.create_index('ix_rag_documents_job_id', ['job_id'], unique=True)
    op.create_table('rag_chunks',
    sa.Column('id', sa.String(length=40), nullable=False),
    sa.Column('document_id', sa.String(length=40), nullable=False),
    sa.Column('user_id', sa.String(length=40), nullable=False),
    sa.Column('position', sa.Integer(), nullable=False),
    sa.Column('heading', sa.Text(), nullable=True),
    sa.Column('text', sa.Text(), nullable=False),
    sa.Column('start_char', sa.Integer(), nullable=False),
    sa.Column('model', sa.String(length=100), nullable=True),
    sa.Column('dims', sa.Integer(), nullable=True),
    sa.Column('vector', sa.LargeBinary(), nullable=True),
    sa.Column('embedded_at', sa.BigInteger(), nullable=True),
    sa.ForeignKeyConstraint(['document_id'], ['rag_documents.id'], name=op.f('fk_rag_chunks_document_id_rag_documents'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_rag_chunks_user_id_users'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_rag_chunks'))
    )
    with op.batch_alter_table('rag_chunks', schema=None) as batch_op:
        batch_op.create_index('ix_rag_chunks_document_position', ['document_id', 'position'], unique=True)
        batch_op.create_index('ix_rag_chunks_user_model_embedded', ['user_id', 'model', 'embedded_at'], unique=False)
    op.create_table('rag_uploads',
    sa.Column('id', sa.String(length=40), nullable=False),
    sa.Column('user_id', sa.String(length=40), nullable=False),
    sa.Column('file_name', sa.String(length=255), nullable=False),
    sa.Column('content_type', sa.String(length=200), nullable=False),
    sa.Column('size_bytes', sa.BigInteger(), nullable=False),
    sa.Column('sha256', sa.String(length=64), nullable=False),
    sa.Column('chunk_size', sa.Integer(), nullable=False),
    sa.Column('created_at', sa.BigInteger(), nullable=False),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_rag_uploads_user_id_users'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_rag_uploads')),
    sa.UniqueConstraint('user_id', 'sha256', 'size_bytes', 'file_name', name='uq_rag_uploads_user_file')
    )
    _full_text()
    # the vector index's sync (ai/ann.py) asks count and max(created_at) per person and model:
    # with created_at in the index that is an index-only scan, not a read of every vector row
    with op.batch_alter_table('message_embeddings', schema=None) as batch_op:
        batch_op.drop_index('ix_message_embeddings_user_model')
        batch_op.create_index('ix_message_embeddings_user_model_created', ['user_id', 'model', 'created_at'], unique=False)


def _full_text() -> None:
    """Keyword search over chunk text: FTS5 (BM25) on SQLite, a GIN tsvector index on PostgreSQL."""
    if op.get_context().dialect.name == "postgresql":
        op.execute("CREATE INDEX ix_rag_chunks_fts ON rag_chunks USING gin (to_tsvector('simple', text))")
        return
    op.execute("CREATE VIRTUAL TABLE rag_chunks_fts USING fts5("
        "text, content='rag_chunks', content_rowid='rowid', tokenize='unicode61 remove_diacritics 2')")
    op.execute(
        "CREATE TRIGGER rag_chunks_fts_insert AFTER INSERT ON rag_chunks BEGIN "
        "INSERT INTO rag_chunks_fts(rowid, text) VALUES (new.rowid, new.text); END"
    )
    op.execute(
        "CREATE TRIGGER rag_chunks_fts_delete AFTER DELETE ON rag_chunks BEGIN "
        "INSERT INTO rag_chunks_fts(rag_chunks_fts, rowid, text) VALUES ('delete', old.rowid, old.text); END"
    )
    op.execute(
        "CREATE TRIGGER rag_chunks_fts_update AFTER UPDATE OF text ON rag_chunks BEGIN "
        "INSERT INTO rag_chunks_fts(rag_chunks_fts, rowid, text) VALUES ('delete', old.rowid, old.text); "
        "INSERT INTO rag_chunks_fts(rowid, text) VALUES (new.rowid, new.text); END"
    )


def downgrade() -> None:
    with op.batch_alter_table('message_embeddings', schema=None) as batch_op:
        batch_op.drop_index('ix_message_embeddings_user_model_created')
        batch_op.create_index('ix_message_embeddings_user_model', ['user_id', 'model'], unique=False)
    if op.get_context().dialect.name == "postgresql":
        op.execute("DROP INDEX IF EXISTS ix_rag_chunks_fts")
    else:
        for trigger in ("insert", "delete", "update"):
            op.execute(f"DROP TRIGGER IF EXISTS rag_chunks_fts_{trigger}")
        op.execute("DROP TABLE IF EXISTS rag_chunks_fts")
    op.drop_table('rag_uploads')
    with op.batch_alter_table('rag_chunks', schema=None) as batch_op:
        batch_op.drop_index('ix_rag_chunks_user_model_embedded')
        batch_op.drop_index('ix_rag_chunks_document_position')
    op.drop_table('rag_chunks')
    with op.batch_alter_table('rag_documents', schema=None) as batch_op:
        batch_op.drop_index('ix_rag_documents_job_id')
        batch_op.drop_index('ix_rag_documents_status')
        batch_op.drop_index('ix_rag_documents_user_created')
    op.drop_table('rag_documents')
