"""Insights quality on a hand-labelled set, each number beside a naive rule baseline run here too.

Usage::

    .venv/bin/python -m bench.insights [--quick] [--database sqlite|postgresql] [--set main|heldout] [-v]

A real hub (SQLite in a temporary folder by default, or a scratch PostgreSQL database; Redis from
LOOMI_REDIS_URL, else the embedded one `loomi serve` uses) serves the API on a socket. The bench
registers the labelled person, sets their aliases (`PUT /api/user/identity`), imports
`conversations.jsonl` (`POST /api/messages/import`), runs `POST /api/insights/generate` with
`method: "offline"` (and `"llm"` when LOOMI_AI_BASE_URL is set), and scores against
`labels.json`:

- tasks P/R/F1: myTasks, waitingForMe and waitingForOthers items, a predicted item paired with a
  labelled one of the same list when their source messages overlap (one-to-one, greedy);
- mentions P/R/F1 on message ids; urgency, importance, isUnreplied and dueDate (same day)
  accuracy per chat; category Jaccard (mean over chats);
- secrets: share of labelled secrets gone from the text the LLM method would send (recall);
- messages/s of generation.

The baseline is a few lines of regex (question marks, request words, the person's names).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, AsyncIterator

import httpx

from bench.common import emit

ROOT = Path(__file__).resolve().parent.parent
LISTS = ("myTasks", "waitingForMe", "waitingForOthers")


# -- the naive baseline ------------------------------------------------------------------------

_B_REQ = re.compile(r"can you|could you|please|pls|请|麻烦|帮我|记得", re.I)
_B_URGENT = re.compile(r"urgent|asap|紧急|马上", re.I)


def baseline(msgs: list[dict[str, Any]], names: list[str], is_dm: bool) -> dict[str, Any]:
    """Question marks, request words and the person's names; nothing else."""
    name_re = re.compile("|".join(re.escape(n) for n in names), re.I)
    out: dict[str, Any] = {k: [] for k in LISTS}
    for m in msgs:
        text = m["text"]
        if m["isSelf"]:
            if "?" in text or "？" in text:
                out["waitingForOthers"].append({"sourceMessageIds": [m["id"]]})
            continue
        if not (is_dm or name_re.search(text)):
            continue
        if _B_REQ.search(text):
            out["myTasks"].append({"sourceMessageIds": [m["id"]]})
        elif "?" in text or "？" in text:
            out["waitingForMe"].append({"sourceMessageIds": [m["id"]]})
    out["mentions"] = [m["id"] for m in msgs if not m["isSelf"] and name_re.search(m["text"])]
    last = msgs[-1]
    out["isUnreplied"] = (not last["isSelf"]) and (is_dm or bool(name_re.search(last["text"]))) and ("?" in last["text"] or "？" in last["text"] or bool(_B_REQ.search(last["text"])))
    open_ = out["myTasks"] or out["waitingForMe"]
    out["urgency"] = "high" if any(_B_URGENT.search(m["text"]) for m in msgs) else ("medium" if open_ else "low")
    out["importance"] = "medium" if open_ else "low"
    out["categories"] = ["Other"]
    out["dueDate"] = None
    return out


_B_SECRET = re.compile(r"\b\d{4,}\b|password:?\s*\S+", re.I)


def baseline_redact(text: str) -> str:
    return _B_SECRET.sub("[REDACTED]", text)


# -- scoring ---------------------------------------------------------------------------------------


@dataclass
class PRF:
    tp: int = 0
    fp: int = 0
    fn: int = 0

    def add(self, tp: int, fp: int, fn: int) -> None:
        self.tp, self.fp, self.fn = self.tp + tp, self.fp + fp, self.fn + fn

    @property
    def p(self) -> float:
        return self.tp / (self.tp + self.fp) if self.tp + self.fp else 1.0

    @property
    def r(self) -> float:
        return self.tp / (self.tp + self.fn) if self.tp + self.fn else 1.0

    @property
    def f1(self) -> float:
        return 2 * self.p * self.r / (self.p + self.r) if self.p + self.r else 0.0

    def __str__(self) -> str:
        return f"P {self.p:.2f} R {self.r:.2f} F1 {self.f1:.2f}"


@dataclass
class Score:
    tasks: PRF = field(default_factory=PRF)
    per_list: dict[str, PRF] = field(default_factory=lambda: {k: PRF() for k in LISTS})
    mentions: PRF = field(default_factory=PRF)
    urgency: list[bool] = field(default_factory=list)
    importance: list[bool] = field(default_factory=list)
    unreplied: list[bool] = field(default_factory=list)
    due: list[bool] = field(default_factory=list)
    jaccard: list[float] = field(default_factory=list)
    misses: list[str] = field(default_factory=list)


def pair(pred: list[list[str]], gold: list[list[str]]) -> int:
    used, matched = set(), 0
    for p in pred:
        for j, g in enumerate(gold):
            if j not in used and set(p) & set(g):
                used.add(j)
                matched += 1
                break
    return matched


def score_chat(score: Score, cid: str, got: dict[str, Any], label: dict[str, Any], ids: dict[str, str]) -> None:
    for name in LISTS:
        pred = [it["sourceMessageIds"] for it in got.get(name) or []]
        gold = [[ids[n] for n in item] for item in label[name]]
        tp = pair(pred, gold)
        score.tasks.add(tp, len(pred) - tp, len(gold) - tp)
        score.per_list[name].add(tp, len(pred) - tp, len(gold) - tp)
        if tp != len(pred) or tp != len(gold):
            score.misses.append(f"{cid} {name}: got {len(pred)} want {len(gold)} matched {tp}")
    pred_m, gold_m = set(got.get("mentions") or []), {ids[n] for n in label["mentions"]}
    score.mentions.add(len(pred_m & gold_m), len(pred_m - gold_m), len(gold_m - pred_m))
    for attr, key in (("urgency", "urgency"), ("importance", "importance"), ("unreplied", "isUnreplied")):
        ok = got.get(key) == label[key]
        getattr(score, attr).append(ok)
        if not ok:
            score.misses.append(f"{cid} {key}: got {got.get(key)} want {label[key]}")
    due = (got.get("dueDate") or "")[:10] or None
    score.due.append(due == label["dueDate"])
    a, b = set(got.get("categories") or []), set(label["categories"])
    score.jaccard.append(len(a & b) / len(a | b) if a | b else 1.0)
    if a != b:
        score.misses.append(f"{cid} categories: got {sorted(a)} want {sorted(b)}")


def mean(values: list[bool] | list[float]) -> float:
    return sum(values) / len(values) if values else 0.0


# -- the hub ---------------------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def hub_for(database: str, tmp: Path) -> AsyncIterator[Any]:
    from tests.e2e.harness import fresh_database, running_hub

    redis_url = os.environ.get("LOOMI_REDIS_URL")
    embedded = None
    if not redis_url:
        from loomi.embedded_redis import EmbeddedRedis

        embedded = EmbeddedRedis(tmp / "redis")
        redis_url = embedded.start()
    try:
        async with fresh_database(database, tmp) as url:
            env = {"LOOMI_HOME": str(tmp / "home"), "LOOMI_DATABASE_URL": url, "LOOMI_REDIS_URL": redis_url,
                   "LOOMI_SECRET_KEY": "bench-insights", "LOOMI_LOG_LEVEL": "warning"}
            for key in ("LOOMI_AI_BASE_URL", "LOOMI_AI_API_KEY", "LOOMI_AI_MODEL", "LOOMI_AI_PROVIDERS_FILE"):
                if os.environ.get(key):
                    env[key] = os.environ[key]
            async with running_hub(env, worker=False, flush=False) as running:
                yield running
    finally:
        if embedded is not None:
            embedded.stop()


async def all_messages(client: httpx.AsyncClient, headers: dict[str, str]) -> list[dict[str, Any]]:
    out, cursor = [], None
    while True:
        params: dict[str, Any] = {"limit": 500, **({"cursor": cursor} if cursor else {})}
        page = (await client.get("/api/messages", params=params, headers=headers)).json()
        out += page["messages"]
        cursor = page["nextCursor"]
        if not cursor:
            return out


BASELINE_LABEL = "regex baseline (question marks, request words, the person's names)"


def emit_scores(labelled: str, method: str, score: Score, base: Score) -> None:
    """The headline figures of one method, each beside the baseline's on the same set."""
    for figure, mine, theirs in (
        ("tasks F1", score.tasks.f1, base.tasks.f1),
        ("mentions F1", score.mentions.f1, base.mentions.f1),
        ("urgency accuracy", mean(score.urgency), mean(base.urgency)),
        ("importance accuracy", mean(score.importance), mean(base.importance)),
        ("isUnreplied accuracy", mean(score.unreplied), mean(base.unreplied)),
    ):
        emit("insights", f"{labelled} set, {method}: {figure}", mine, "", baseline=theirs, baseline_label=BASELINE_LABEL,
             aim="at least the baseline", ok=mine >= theirs)


def report(title: str, score: Score, base: Score, rate: float, base_rate: float) -> None:
    print(f"\n== {title} (beside the naive baseline) ==")
    rows = [
        ("tasks (all lists)", str(score.tasks), str(base.tasks)),
        *[(f"  {k}", str(score.per_list[k]), str(base.per_list[k])) for k in LISTS],
        ("mentions", str(score.mentions), str(base.mentions)),
        ("urgency accuracy", f"{mean(score.urgency):.2f}", f"{mean(base.urgency):.2f}"),
        ("importance accuracy", f"{mean(score.importance):.2f}", f"{mean(base.importance):.2f}"),
        ("isUnreplied accuracy", f"{mean(score.unreplied):.2f}", f"{mean(base.unreplied):.2f}"),
        ("dueDate accuracy (day)", f"{mean(score.due):.2f}", f"{mean(base.due):.2f}"),
        ("categories Jaccard", f"{mean(score.jaccard):.2f}", f"{mean(base.jaccard):.2f}"),
        ("messages/s", f"{rate:.0f}", f"{base_rate:.0f}"),
    ]
    width = max(len(r[0]) for r in rows)
    print(f"{'':{width}}  {'method':<24}  baseline")
    for name, a, b in rows:
        print(f"{name:{width}}  {a:<24}  {b}")


async def run(args: argparse.Namespace) -> int:
    from ai.insights.redact import Redactor

    data = Path(args.data)
    prefix = "" if args.set == "main" else f"{args.set}-"
    labels = json.loads((data / f"{prefix}labels.json").read_text(encoding="utf-8"))
    person, convs = labels["person"], labels["conversations"]
    body = (data / f"{prefix}conversations.jsonl").read_bytes()
    print(f"set: {args.set} ({len(convs)} labelled conversations)")
    with tempfile.TemporaryDirectory(prefix="bench-insights-") as tmp:
        async with hub_for(args.database, Path(tmp)) as running:
            client = running.client
            email = "alex@example.com"
            r = await client.post("/api/remote-auth/register", json={"email": email, "password": "bench password 1", "name": person["name"]})
            r.raise_for_status()
            headers = {"Authorization": f"Bearer {r.json()['token']}"}
            client.cookies.clear()
            (await client.put("/api/user/identity", json={"aliases": person["aliases"]}, headers=headers)).raise_for_status()
            started = time.perf_counter()
            imported = (await client.post("/api/messages/import", content=body, headers=headers)).json()
            print(f"{args.database}: imported {imported['imported']} messages in {time.perf_counter() - started:.2f} s ({imported})")
            msgs = await all_messages(client, headers)
            ids = {m["nativeId"]: m["id"] for m in msgs}
            accounts = {}
            for line in body.decode().splitlines():
                rec = json.loads(line)
                accounts[(rec["platform"], rec["chat"]["id"])] = rec
            names = [person["name"], *person["aliases"], *{rec["account"]["name"] for rec in accounts.values()}]

            by_chat: dict[tuple[str, str], list[dict[str, Any]]] = {}
            for m in sorted(msgs, key=lambda m: (m["timestamp"], m["id"])):
                by_chat.setdefault((m["platform"], m["chatId"]), []).append(m)

            started = time.perf_counter()
            base_out = {key: baseline(ms, names, accounts[key]["chat"]["type"] == "dm") for key, ms in by_chat.items()}
            base_rate = len(msgs) / max(time.perf_counter() - started, 1e-9)
            base = Score()
            for cid, label in convs.items():
                score_chat(base, cid, base_out[(label["platform"], label["chatId"])], label, ids)

            methods = ["offline"] + (["llm"] if os.environ.get("LOOMI_AI_BASE_URL") or os.environ.get("LOOMI_AI_PROVIDERS_FILE") else [])
            for method in methods:
                rates = []
                for run_ in range(3 if method == "offline" and not args.quick else 1):
                    if run_ == 2:  # what a worker sees: the indexer has embedded the messages already
                        from ai.indexer import index_pending

                        while await index_pending(running.hub, limit=500):
                            pass
                    started = time.perf_counter()
                    r = await client.post("/api/insights/generate", json={"method": method, "force": True}, headers=headers, timeout=600)
                    r.raise_for_status()
                    rates.append(len(msgs) / (time.perf_counter() - started))
                if len(rates) > 1:
                    print(f"{method}: {rates[0]:.0f} messages/s cold (loading the embedding model), {rates[1]:.0f} warm, "
                          f"{rates[2]:.0f} with the indexer's stored vectors (the worker's case)")
                elapsed = len(msgs) / rates[-1]
                got = {(i["platform"], i["chatId"]): i for i in r.json()["insights"]}
                score = Score()
                for cid, label in convs.items():
                    score_chat(score, cid, got[(label["platform"], label["chatId"])], label, ids)
                report(f"{method} method, {len(convs)} conversations, {len(msgs)} messages", score, base, len(msgs) / elapsed, base_rate)
                emit_scores(args.set, method, score, base)
                if method == "llm":
                    used = {i["method"] for i in got.values()}
                    print(f"insights made by: {sorted(used)} (offline = the LLM answer was refused or the upstream failed)")
                if args.verbose:
                    print("\n".join("  miss: " + m for m in score.misses))

            secrets = [(cid, s) for cid, label in convs.items() for s in label["secrets"]]
            texts = {cid: [m["text"] for m in by_chat[(label["platform"], label["chatId"])]] for cid, label in convs.items()}
            caught = sum(all(s not in Redactor().redact(t) for t in texts[cid]) for cid, s in secrets)
            base_caught = sum(all(s not in baseline_redact(t) for t in texts[cid]) for cid, s in secrets)
            clean = [t for cid, label in convs.items() if not label["secrets"] for t in texts[cid]]
            over = sum(Redactor().redact(t) != t for t in clean)
            base_over = sum(baseline_redact(t) != t for t in clean)
            print(f"\nsecrets redacted before upstream: recall {caught}/{len(secrets)} = {caught / len(secrets):.2f} "
                  f"(baseline {base_caught / len(secrets):.2f}); messages of secret-free chats altered: {over}/{len(clean)} (baseline {base_over})")
            emit("insights", f"{args.set} set: secrets redacted before upstream (recall)", caught / len(secrets), "recall",
                 baseline=base_caught / len(secrets), baseline_label="regex baseline (long numbers, password: ...)",
                 aim="at least the baseline", ok=caught >= base_caught)
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database", choices=("sqlite", "postgresql"), default="sqlite")
    parser.add_argument("--data", default=str(ROOT / "bench" / "data" / "insights"))
    parser.add_argument("--set", choices=("main", "heldout"), default="main",
                        help="main: the set written before the method; heldout: 16 more, written after it and never tuned on")
    parser.add_argument("--verbose", "-v", action="store_true", help="list every disagreement with the labels")
    parser.add_argument("--quick", action="store_true", help="one generation run per method instead of cold/warm/stored")
    return asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    sys.exit(main())
