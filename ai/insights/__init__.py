"""Insights: what each conversation asks of the person, one insight per chat (issue 10).

`offline` is the default method (rules over reply structure, addressing and EN/ZH patterns,
a date resolver, the shipped embedding model for categories; nothing leaves the machine);
`llm` asks the configured upstream through the AI gateway, secrets redacted first (`redact`),
and falls back to the offline result. `engine` loads a chat, runs a method, upserts the row; `worker` follows the owners' `seq`.
`filters` compiles the insight tabs' filter language to SQL.
"""
