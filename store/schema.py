"""Tables. Times are integer milliseconds since the epoch on both databases: exact, sortable,
and free of the timezone quirks that SQLite's text dates bring."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB

metadata = sa.MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

JSON = sa.JSON().with_variant(JSONB(), "postgresql")
Millis = sa.BigInteger

users = sa.Table(
    "users",
    metadata,
    sa.Column("id", sa.String(40), primary_key=True),
    sa.Column("email", sa.String(320), nullable=False, unique=True),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("avatar_url", sa.String(2000)),
    sa.Column("password_hash", sa.String(200)),
    sa.Column("token_version", sa.Integer, nullable=False, server_default="0"),
    sa.Column("identity", JSON, nullable=False),
    sa.Column("is_owner", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("seq", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column("created_at", Millis, nullable=False),
    sa.Column("updated_at", Millis, nullable=False),
)

sessions = sa.Table(
    "sessions",
    metadata,
    sa.Column("id", sa.String(40), primary_key=True),
    sa.Column("user_id", sa.String(40), sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=False, index=True),
    sa.Column("kind", sa.String(20), nullable=False),  # password | local | oauth | set-token
    sa.Column("created_at", Millis, nullable=False),
    sa.Column("expires_at", Millis, nullable=False),
    sa.Column("revoked_at", Millis),
)

user_identities = sa.Table(  # a provider sign-in (GitHub, Google) bound to one hub user, never by email alone
    "user_identities",
    metadata,
    sa.Column("provider", sa.String(20), primary_key=True),
    sa.Column("provider_user_id", sa.String(200), primary_key=True),  # GitHub numeric id, Google `sub`
    sa.Column("user_id", sa.String(40), sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=False, index=True),
    sa.Column("email", sa.String(320), nullable=False),  # what the provider said when it was linked
    sa.Column("created_at", Millis, nullable=False),
)

invites = sa.Table(  # LOOMI_REGISTRATION=invite: single-use sign-up codes made by `loomi invite`
    "invites",
    metadata,
    sa.Column("code_hash", sa.String(64), primary_key=True),  # sha256 of the code: the code itself is never stored
    sa.Column("created_by", sa.String(40), sa.ForeignKey("users.id", ondelete="SET NULL")),
    sa.Column("created_at", Millis, nullable=False),
    sa.Column("expires_at", Millis, nullable=False),
    sa.Column("used_by", sa.String(40), sa.ForeignKey("users.id", ondelete="SET NULL")),
    sa.Column("used_at", Millis),
)

accounts = sa.Table(
    "accounts",
    metadata,
    sa.Column("id", sa.String(40), primary_key=True),
    sa.Column("user_id", sa.String(40), sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=False, index=True),
    sa.Column("platform", sa.String(20), nullable=False),
    sa.Column("external_id", sa.String(200), nullable=False),  # team id, bot id, phone…
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("credentials", sa.Text),  # AES-GCM ciphertext with key id: store/crypto.py
    sa.Column("credentials_expire_at", Millis),
    sa.Column("settings", JSON, nullable=False),  # non-secret options: mode, channels…
    sa.Column("resume", JSON, nullable=False),  # listener resume state: offsets, cursors
    sa.Column("enabled", sa.Boolean, nullable=False, server_default=sa.true()),
    sa.Column("state", sa.String(20), nullable=False, server_default="stopped"),
    sa.Column("state_detail", sa.String(500)),
    sa.Column("last_event_at", Millis),
    sa.Column("lag_ms", sa.BigInteger),
    sa.Column("created_at", Millis, nullable=False),
    sa.Column("updated_at", Millis, nullable=False),
    sa.UniqueConstraint("user_id", "platform", "external_id"),
    sa.Index("ix_accounts_platform_external", "platform", "external_id"),  # routing app-wide events
)

messages = sa.Table(
    "messages",
    metadata,
    sa.Column("id", sa.String(40), primary_key=True),
    sa.Column("user_id", sa.String(40), sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    sa.Column("account_id", sa.String(40), sa.ForeignKey("accounts.id", ondelete="CASCADE"), nullable=False),
    sa.Column("platform", sa.String(20), nullable=False),
    sa.Column("chat_id", sa.String(200), nullable=False),
    sa.Column("chat_name", sa.String(500)),
    sa.Column("chat_type", sa.String(10), nullable=False),  # dm | group | channel | thread
    sa.Column("native_id", sa.String(200), nullable=False),
    sa.Column("thread_id", sa.String(200)),
    sa.Column("reply_to_id", sa.String(200)),
    sa.Column("sender_id", sa.String(200)),
    sa.Column("sender_name", sa.String(500)),
    sa.Column("is_self", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("direction", sa.String(10), nullable=False),  # inbound | outbound
    sa.Column("text", sa.Text, nullable=False, server_default=""),
    sa.Column("original_text", sa.Text),  # the first text, kept when an edit replaces it
    sa.Column("content_type", sa.String(50), nullable=False, server_default="text"),
    sa.Column("attachments", JSON, nullable=False),
    sa.Column("mentions", JSON, nullable=False),
    sa.Column("reactions", JSON, nullable=False),
    sa.Column("sent_at", Millis, nullable=False),
    sa.Column("edited_at", Millis),
    sa.Column("deleted_at", Millis),
    sa.Column("status", sa.String(10)),  # outbound: pending | sent | failed
    sa.Column("error", sa.String(500)),
    sa.Column("idempotency_key", sa.String(200)),
    sa.Column("seq", sa.BigInteger, nullable=False),
    sa.Column("raw", JSON),
    sa.Column("created_at", Millis, nullable=False),
    sa.Column("updated_at", Millis, nullable=False),
    sa.UniqueConstraint("account_id", "chat_id", "native_id"),
    sa.Index("ix_messages_user_seq", "user_id", "seq"),
    sa.Index("ix_messages_user_sent", "user_id", "sent_at", "id"),
    # GET /api/messages filters (0010): each equality filter leads to the same (sent_at, id)
    # order, so any filtered page is an index range read, never a walk over the owner's rows
    sa.Index("ix_messages_user_chat_sent", "user_id", "chat_id", "sent_at", "id"),
    sa.Index("ix_messages_user_account_sent", "user_id", "account_id", "sent_at", "id"),
    sa.Index("ix_messages_user_platform_sent", "user_id", "platform", "sent_at", "id"),
    sa.Index("ix_messages_user_sender_sent", "user_id", "sender_id", "sent_at", "id"),
    sa.Index(
        "ix_messages_user_thread_sent", "user_id", "thread_id", "sent_at", "id",
        sqlite_where=sa.text("thread_id IS NOT NULL"), postgresql_where=sa.text("thread_id IS NOT NULL"),
    ),
    sa.Index("ix_messages_user_idempotency", "user_id", "idempotency_key", unique=True),
)

chats = sa.Table(  # what the platform last said a chat is; first seen with its first message
    "chats",
    metadata,
    sa.Column("account_id", sa.String(40), sa.ForeignKey("accounts.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("chat_id", sa.String(200), primary_key=True),
    sa.Column("user_id", sa.String(40), sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=False, index=True),
    sa.Column("name", sa.String(500)),
    sa.Column("type", sa.String(10)),
    sa.Column("members", JSON),  # member ids, when the platform lists them
    sa.Column("updated_at", Millis, nullable=False),
)

feedback = sa.Table(
    "feedback",
    metadata,
    sa.Column("id", sa.String(40), primary_key=True),
    sa.Column("user_id", sa.String(40), sa.ForeignKey("users.id", ondelete="SET NULL")),
    sa.Column("email", sa.String(320)),
    sa.Column("content", sa.Text, nullable=False),
    sa.Column("created_at", Millis, nullable=False),
)

ledger = sa.Table(
    "ledger",
    metadata,
    sa.Column("id", sa.String(40), primary_key=True),
    sa.Column("user_id", sa.String(40), sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    sa.Column("source", sa.String(20), nullable=False),  # purchase | usage | refund | reward | subscription
    sa.Column("description", sa.String(500), nullable=False),
    sa.Column("model", sa.String(200)),
    sa.Column("input_tokens", sa.Integer),
    sa.Column("output_tokens", sa.Integer),
    sa.Column("delta", sa.Numeric(18, 6)),
    sa.Column("balance_after", sa.Numeric(18, 6)),
    sa.Column("created_at", Millis, nullable=False),
    sa.Index("ix_ledger_user_created", "user_id", "created_at", "id"),
)

message_embeddings = sa.Table(
    "message_embeddings",
    metadata,
    # One vector per message, computed in the background by ai/indexer.py; user_id is copied
    # from the message so vector search filters by owner without a join.
    sa.Column("message_id", sa.String(40), sa.ForeignKey("messages.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("user_id", sa.String(40), sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    sa.Column("model", sa.String(100), nullable=False),
    sa.Column("dims", sa.Integer, nullable=False),
    sa.Column("vector", sa.LargeBinary, nullable=False),  # little-endian float32, L2-normalized
    sa.Column("created_at", Millis, nullable=False),
    sa.Index("ix_message_embeddings_user_model_created", "user_id", "model", "created_at"),  # 0007: ai/ann.py sync
)

insights = sa.Table(
    "insights",
    metadata,
    # One row per (owner, chat): what the chat asks of the person, recomputed by ai/insights
    # as of the chat's newest message; `last_seq` is how far the owner's message seq was folded in.
    sa.Column("id", sa.String(40), primary_key=True),
    sa.Column("user_id", sa.String(40), sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    sa.Column("account_id", sa.String(40)),
    sa.Column("platform", sa.String(40), nullable=False),
    sa.Column("chat_id", sa.String(500), nullable=False),
    sa.Column("chat_name", sa.String(500)),
    sa.Column("dedupe_key", sa.String(600), nullable=False),
    sa.Column("title", sa.Text, nullable=False),
    sa.Column("description", sa.Text, nullable=False),
    sa.Column("importance", sa.String(10), nullable=False),
    sa.Column("urgency", sa.String(10), nullable=False),
    sa.Column("categories", JSON, nullable=False),
    sa.Column("people", JSON, nullable=False),
    sa.Column("my_tasks", JSON, nullable=False),
    sa.Column("waiting_for_me", JSON, nullable=False),
    sa.Column("waiting_for_others", JSON, nullable=False),
    sa.Column("next_actions", JSON, nullable=False),
    sa.Column("mentions", JSON, nullable=False),
    sa.Column("is_unreplied", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("due_date", Millis),
    sa.Column("source_message_ids", JSON, nullable=False),
    sa.Column("method", sa.String(20), nullable=False),
    sa.Column("model", sa.String(200)),
    sa.Column("as_of", Millis, nullable=False),
    sa.Column("last_seq", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column("created_at", Millis, nullable=False),
    sa.Column("updated_at", Millis, nullable=False),
    sa.UniqueConstraint("user_id", "dedupe_key", name="uq_insights_user_dedupe"),
    sa.Index("ix_insights_user_updated", "user_id", "updated_at"),
    sa.Index("ix_insights_user_chat", "user_id", "chat_id"),
)

insight_brief = sa.Table(
    "insight_brief",
    metadata,
    # The person's brief category (urgent | important | monitor | archive) per insight.
    # source `auto` rows come from sync and may be replaced or cleaned; `override` rows, pins and
    # explicit unpins (`unpinned_at`) are the person's, and nothing automatic changes them.
    sa.Column("user_id", sa.String(40), sa.ForeignKey("users.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("insight_id", sa.String(40), sa.ForeignKey("insights.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("category", sa.String(10), nullable=False),
    sa.Column("source", sa.String(10), nullable=False),  # auto | override
    sa.Column("pinned", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("unpinned_at", Millis),  # the person took it off the brief; sync must not bring it back
    sa.Column("updated_at", Millis, nullable=False),
)

insight_tabs = sa.Table(
    "insight_tabs",
    metadata,
    # Saved filters over `insights` ({match, conditions[]}, ai/insights/filters.py), in tab order.
    sa.Column("id", sa.String(40), primary_key=True),
    sa.Column("user_id", sa.String(40), sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    sa.Column("name", sa.String(100), nullable=False),
    sa.Column("filter", JSON, nullable=False),
    sa.Column("enabled", sa.Boolean, nullable=False, server_default=sa.true()),
    sa.Column("position", sa.Integer, nullable=False, server_default="0"),
    sa.Column("created_at", Millis, nullable=False),
    sa.Column("updated_at", Millis, nullable=False),
    sa.Index("ix_insight_tabs_user_position", "user_id", "position"),
)

rag_documents = sa.Table(
    "rag_documents",
    metadata,
    # A person's uploaded document (ai/rag): the bytes live under LOOMI_HOME named by `id`;
    # `status` is pending -> extracting -> embedding (n/m) -> ready | failed: reason.
    sa.Column("id", sa.String(40), primary_key=True),
    sa.Column("user_id", sa.String(40), sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    sa.Column("job_id", sa.String(40)),  # set for upload/async: what upload/async/status looks up
    sa.Column("name", sa.String(255), nullable=False),
    sa.Column("content_type", sa.String(200), nullable=False),
    sa.Column("kind", sa.String(10), nullable=False),  # txt | md | html | pdf | docx
    sa.Column("size_bytes", sa.BigInteger, nullable=False),
    sa.Column("sha256", sa.String(64), nullable=False),
    sa.Column("status", sa.String(300), nullable=False),
    sa.Column("chunk_count", sa.Integer, nullable=False, server_default="0"),
    sa.Column("embedded_count", sa.Integer, nullable=False, server_default="0"),
    sa.Column("created_at", Millis, nullable=False),
    sa.Column("updated_at", Millis, nullable=False),
    sa.Index("ix_rag_documents_user_created", "user_id", "created_at"),
    sa.Index("ix_rag_documents_status", "status"),
    sa.Index("ix_rag_documents_job_id", "job_id", unique=True),
)

rag_chunks = sa.Table(
    "rag_chunks",
    metadata,
    # One passage of a document, cut on its structure; its vector is written by the RAG
    # embedding job. Full-text search: FTS5 `rag_chunks_fts` / a tsvector GIN index (migration 0007).
    sa.Column("id", sa.String(40), primary_key=True),
    sa.Column("document_id", sa.String(40), sa.ForeignKey("rag_documents.id", ondelete="CASCADE"), nullable=False),
    sa.Column("user_id", sa.String(40), sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    sa.Column("position", sa.Integer, nullable=False),
    sa.Column("heading", sa.Text),
    sa.Column("text", sa.Text, nullable=False),
    sa.Column("start_char", sa.Integer, nullable=False),
    sa.Column("model", sa.String(100)),
    sa.Column("dims", sa.Integer),
    sa.Column("vector", sa.LargeBinary),  # little-endian float32, L2-normalized (ai/vectors.py)
    sa.Column("embedded_at", Millis),
    sa.Index("ix_rag_chunks_document_position", "document_id", "position", unique=True),
    sa.Index("ix_rag_chunks_user_model_embedded", "user_id", "model", "embedded_at"),
)

rag_uploads = sa.Table(
    "rag_uploads",
    metadata,
    # A resumable chunked upload; its parts are files under LOOMI_HOME. The same file (name,
    # size, sha256) from the same person finds the same row, so init again resumes.
    sa.Column("id", sa.String(40), primary_key=True),
    sa.Column("user_id", sa.String(40), sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    sa.Column("file_name", sa.String(255), nullable=False),
    sa.Column("content_type", sa.String(200), nullable=False),
    sa.Column("size_bytes", sa.BigInteger, nullable=False),
    sa.Column("sha256", sa.String(64), nullable=False),
    sa.Column("chunk_size", sa.Integer, nullable=False),
    sa.Column("created_at", Millis, nullable=False),
    sa.UniqueConstraint("user_id", "sha256", "size_bytes", "file_name", name="uq_rag_uploads_user_file"),
)

files = sa.Table(
    "files",
    metadata,
    # A person's stored file (/api/files): the bytes live under LOOMI_FILES_DIR (default
    # $LOOMI_HOME/files)/<user id>/<id>, named by id; `name` is only shown back.
    sa.Column("id", sa.String(40), primary_key=True),
    sa.Column("user_id", sa.String(40), sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    sa.Column("name", sa.String(255), nullable=False),
    sa.Column("content_type", sa.String(200), nullable=False),
    sa.Column("size_bytes", sa.BigInteger, nullable=False),
    sa.Column("sha256", sa.String(64), nullable=False),
    sa.Column("source", sa.String(20), nullable=False),  # upload | save | insights
    sa.Column("created_at", Millis, nullable=False),
    sa.Index("ix_files_user_created", "user_id", "created_at"),
)

skills = sa.Table(
    "skills",
    metadata,
    # A person's workspace skill: SKILL.md (YAML front matter + body) and, for a zip upload,
    # its other files under $LOOMI_HOME/skills/<user id>/<id>/.
    sa.Column("id", sa.String(40), primary_key=True),
    sa.Column("user_id", sa.String(40), sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    sa.Column("name", sa.String(100), nullable=False),
    sa.Column("description", sa.String(2000), nullable=False),
    sa.Column("version", sa.String(50)),
    sa.Column("content", sa.Text, nullable=False),
    sa.Column("meta", JSON, nullable=False),  # the front matter's other keys
    sa.Column("files", JSON, nullable=False),  # relative paths of a zip's other files
    sa.Column("enabled", sa.Boolean, nullable=False, server_default=sa.true()),
    sa.Column("source", sa.String(20), nullable=False),  # created | upload
    sa.Column("created_at", Millis, nullable=False),
    sa.Column("updated_at", Millis, nullable=False),
    sa.UniqueConstraint("user_id", "name", name="uq_skills_user_name"),
)

characters = sa.Table(
    "characters",
    metadata,
    # A person's own assistant persona (/api/chat/characters); the built-in ones live in code
    # (api/routes/chat.py) and are never rows. `model` is optional: the chat's default otherwise.
    sa.Column("id", sa.String(40), primary_key=True),
    sa.Column("user_id", sa.String(40), sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    sa.Column("name", sa.String(100), nullable=False),
    sa.Column("description", sa.String(500)),
    sa.Column("avatar", sa.String(2048)),
    sa.Column("system_prompt", sa.Text, nullable=False),
    sa.Column("model", sa.String(200)),
    sa.Column("created_at", Millis, nullable=False),
    sa.Column("updated_at", Millis, nullable=False),
    sa.Index("ix_characters_user_created", "user_id", "created_at"),
)

assistant_chats = sa.Table(
    "assistant_chats",
    metadata,
    # A conversation with the assistant (/api/chat), not a platform chat (that is `chats`).
    # `character_id` is a row of `characters` or a built-in id, so it carries no foreign key;
    # deleting a character clears it in the same transaction (store/chats.py).
    sa.Column("id", sa.String(40), primary_key=True),
    sa.Column("user_id", sa.String(40), sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    sa.Column("title", sa.String(200), nullable=False),
    sa.Column("character_id", sa.String(40)),
    sa.Column("model", sa.String(200)),
    sa.Column("message_count", sa.Integer, nullable=False, server_default="0"),
    sa.Column("created_at", Millis, nullable=False),
    sa.Column("updated_at", Millis, nullable=False),
    sa.Index("ix_assistant_chats_user_updated", "user_id", "updated_at"),
)

assistant_messages = sa.Table(
    "assistant_messages",
    metadata,
    # One turn of an assistant chat, numbered from 1 within its chat (`seq`, unique).
    sa.Column("id", sa.String(40), primary_key=True),
    sa.Column("chat_id", sa.String(40), sa.ForeignKey("assistant_chats.id", ondelete="CASCADE"), nullable=False),
    sa.Column("user_id", sa.String(40), sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    sa.Column("seq", sa.Integer, nullable=False),
    sa.Column("client_id", sa.String(100)),  # the id an app gave it (save-messages), unique per chat
    sa.Column("role", sa.String(20), nullable=False),  # user | assistant | system
    sa.Column("content", sa.Text, nullable=False),
    sa.Column("meta", JSON, nullable=False),  # model, usage, sources, finish reason
    sa.Column("created_at", Millis, nullable=False),
    sa.Index("ix_assistant_messages_chat_seq", "chat_id", "seq", unique=True),
    sa.Index("ix_assistant_messages_chat_client_id", "chat_id", "client_id", unique=True),
)
