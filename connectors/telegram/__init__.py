"""Telegram bot accounts over the Bot API (python-telegram-bot 22): long polling or webhook in,
`sendMessage` out. Everything Telegram-specific in the hub lives in this folder."""
