"""Every Redis key the hub uses, in one place (like arq's constants.py)."""

INBOUND_STREAM = "loomi:inbound"
INGEST_GROUP = "ingest"
DEAD_LETTERS = "loomi:dlq"
CHANGES_CHANNEL = "loomi:changes"  # pub/sub: user ids whose messages changed
INDEXER_LOCK = "loomi:indexer-lock"  # one embedding indexer at a time across workers


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


def oauth_state(state: str) -> str:
    return f"loomi:oauth-state:{state}"


def refresh_lock(account_id: str) -> str:
    return f"loomi:refresh-lock:{account_id}"
