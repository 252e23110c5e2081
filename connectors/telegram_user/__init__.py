"""Telegram user account (MTProto, Telethon): the person's own dialogs, not a bot's."""
