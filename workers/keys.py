"""The Redis keys of the pipeline, in one place (like arq's constants.py). Keys private to one
module live there (OAuth state: connectors/oauth.py; login flows: api/routes/integrations.py)."""

INBOUND_STREAM = "loomi:inbound"
INGEST_GROUP = "ingest"
DEAD_LETTERS = "loomi:dlq"
CHANGES_CHANNEL = "loomi:changes"  # pub/sub: user ids whose messages changed
INDEXER_LOCK = "loomi:indexer-lock"  # one embedding indexer at a time across workers
WORKERS = "loomi:workers"  # sorted set: worker name -> when its registration lapses (ms)
ACCOUNTS_VERSION = "loomi:accounts:version"  # bumped whenever an account's listener must be reconsidered


def lease(account_id: str) -> str:
    return f"loomi:lease:{account_id}"


def fence(account_id: str) -> str:
    return f"loomi:fence:{account_id}"


def seen(account_id: str, delivery_id: str) -> str:
    return f"loomi:seen:{account_id}:{delivery_id}"


def resume(account_id: str) -> str:
    return f"loomi:resume:{account_id}"


def status(account_id: str) -> str:
    return f"loomi:status:{account_id}"


def backfill_cursor(account_id: str, chat_id: str) -> str:
    return f"loomi:backfill:{account_id}:{chat_id}"


def refresh_lock(account_id: str) -> str:
    return f"loomi:refresh-lock:{account_id}"
