"""X (Twitter) personal account: mentions and DMs polled over API v2, DMs sent, OAuth 2 PKCE."""
