"""Turn conversations.txt (hand-written conversations and labels) into the bench's inputs:
conversations.jsonl (the hub's import format) and labels.json; heldout.txt likewise into
heldout-conversations.jsonl and heldout-labels.json. Run: python bench/data/insights/build.py"""

from __future__ import annotations

import json
import re
from datetime import datetime, timedelta, timezone
from pathlib import Path

HERE = Path(__file__).parent
HEAD = re.compile(r'^## (\S+) \| (\S+) \| (\S+) (.+?) \| (\S+) "(.+)" (dm|group|channel|thread) \| (\S+)$')
LINE = re.compile(r'^(\d+) \+(\d+) (?:ME|(\S+) "(.+?)")(?: >(\d+))? \| (.*)$')
LISTS = ("myTasks", "waitingForMe", "waitingForOthers")


def parse(text: str) -> tuple[list[dict], dict[str, dict]]:
    lines, labels, conv = [], {}, None
    for raw in text.splitlines():
        if not raw.strip() or (raw.startswith("#") and not raw.startswith("## ")):
            continue
        if raw.startswith("## "):
            m = HEAD.match(raw)
            assert m, raw
            cid, platform, acct_id, acct_name, chat_id, chat_name, chat_type, start = m.groups()
            conv = dict(id=cid, platform=platform, account={"id": acct_id, "name": acct_name.strip('"')},
                        chat={"id": chat_id, "name": chat_name, "type": chat_type},
                        start=datetime.fromisoformat(start.replace("Z", "+00:00")))
            continue
        assert conv is not None
        if raw.startswith("= "):
            fields = dict(part.strip().split(":", 1) for part in raw[2:].split(" ; "))
            fields = {k.strip(): v.strip() for k, v in fields.items()}
            label = {name: [[f"{conv['id']}-{n.strip()}" for n in item.split("+")] for item in fields[name].split(",") if item.strip()]
                     for name in LISTS}
            label.update(
                platform=conv["platform"], chatId=conv["chat"]["id"], accountExternalId=conv["account"]["id"],
                mentions=[f"{conv['id']}-{n.strip()}" for n in fields["mentions"].split(",") if n.strip()],
                urgency=fields["urgency"], importance=fields["importance"], isUnreplied=fields["unreplied"] == "yes",
                categories=[c.strip() for c in fields["categories"].split(",") if c.strip()],
                dueDate=fields["due"] or None,
                secrets=[s.strip() for s in fields["secrets"].split(", ") if s.strip()],
            )
            labels[conv["id"]] = label
            continue
        m = LINE.match(raw)
        assert m, raw
        n, minutes, sender_id, sender_name, reply, text_ = m.groups()
        me = sender_id is None
        lines.append({
            "platform": conv["platform"], "account": conv["account"], "chat": conv["chat"],
            "id": f"{conv['id']}-{n}",
            "sender": conv["account"] if me else {"id": sender_id, "name": sender_name},
            "ts": (conv["start"] + timedelta(minutes=int(minutes))).astimezone(timezone.utc).isoformat().replace("+00:00", "Z"),
            "text": text_,
            **({"replyTo": f"{conv['id']}-{reply}"} if reply else {}),
        })
    return lines, labels


def main() -> None:
    person = {"name": "Alex Chen", "aliases": ["Alex", "小陈"]}
    for source, prefix in (("conversations.txt", ""), ("heldout.txt", "heldout-")):
        if not (HERE / source).exists():
            continue
        lines, labels = parse((HERE / source).read_text(encoding="utf-8"))
        (HERE / f"{prefix}conversations.jsonl").write_text("".join(json.dumps(l, ensure_ascii=False) + "\n" for l in lines), encoding="utf-8")
        (HERE / f"{prefix}labels.json").write_text(json.dumps({"person": person, "conversations": labels}, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
        print(f"{source}: {len(labels)} conversations, {len(lines)} messages")


if __name__ == "__main__":
    main()
