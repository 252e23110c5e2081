"""Feishu / Lark: a self-built app's bot over lark-oapi. Long-connection (websocket) events or
the HTTP event callback in, `im/v1/messages` out, chat history for backfill.

`connector.py` wires the pieces; `setup.py` checks the app; `listen.py` speaks the websocket
(and says why not through `lark.ws.Client`); `webhook.py` verifies callbacks; `inbound.py`
normalizes (pure); `outbound.py` sends; `history.py` backfills; `client.py` holds the REST
plumbing they share (tokens per app and secret, rate limits, errors).
"""
