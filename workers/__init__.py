"""Background work on Redis: listener supervision, ingest, backfill, token refresh."""
