"""iMessage on a Mac: the Messages app's own database, `~/Library/Messages/chat.db`, read
(read-only, never locked) by polling for new rows. Nothing talks to Apple: the hub sees what
the Mac's Messages app has synced, in every chat, sent and received.

`chatdb.py` opens and queries the database (read-only URI, short transactions);
`typedstream.py` reads the text out of `attributedBody`; `inbound.py` normalizes (pure);
`listen.py` polls by ROWID; `setup.py` checks the path; `connector.py` wires them.
Sending needs an AppleScript bridge to Messages, which this hub does not have.
"""
