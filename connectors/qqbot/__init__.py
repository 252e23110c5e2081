"""QQ bots (the v2 group and C2C API): the websocket gateway in, passive replies out.
Everything QQ-specific in the hub lives in this folder."""
