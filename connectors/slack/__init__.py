"""Slack: Socket Mode listener, Events API webhook, history backfill, chat.postMessage, OAuth v2.

Split like mautrix/slack: `connector.py` wires the pieces; `inbound.py` normalizes (pure);
`listen.py` owns the Socket Mode connection; `outbound.py` sends; `history.py` backfills;
`oauth.py` turns an oauth.v2.access answer into an account (and documents the credential
keys); `webhook.py` verifies Events API requests; `client.py` holds the Web API plumbing
they share (tokens, base URL, 429 handling).
"""
