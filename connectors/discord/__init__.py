"""Discord: a bot gateway listener for the whole app, guilds connected through OAuth2 (`bot`
scope), channel history backfill and sends, all through discord.py. See connector.py."""
