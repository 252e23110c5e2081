"""X's own settings beyond the shared ones (`LOOMI_X_*`)."""

from __future__ import annotations

from pydantic import Field

from config.settings import PlatformSettings


class XSettings(PlatformSettings):
    # X pushes nothing to an ordinary app: mentions and DMs are polled. The user-context limits
    # (mentions 180, dm_events 300 per 15 min) allow a poll every few seconds; a minute is polite.
    poll_seconds: float = Field(default=60.0, gt=0)
    # A 429 whose x-rate-limit-reset is this close is waited out in the listener (state
    # `backoff`); a later reset ends the listener with RateLimited and the supervisor retries.
    rate_limit_budget_seconds: float = Field(default=900.0, ge=0)
    # Pages read on the first poll of a new account (its history); later polls stop at the
    # last id seen.
    history_pages: int = Field(default=5, ge=1)
