"""Bringing history in from files: parsers turn a source into `ImportRecord`s, `apply` stores them.

Why a package and not one module: each source is its own small parser (the hub's JSONL and
openloomi's `/api/messages/raw` shape now; a Slack export zip, Telegram Desktop's result.json
and WhatsApp's .txt later, issue 9), and all of them meet in one record type and one write
path (`imports.apply.import_records`), so a new source is one new module and nothing else.
"""

from imports.records import BadInput, ImportRecord, ImportResult

__all__ = ["BadInput", "ImportRecord", "ImportResult"]
