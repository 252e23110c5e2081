"""Which of the person's categories a chat is about: keywords (EN/ZH) first, then the shipped
embedding model (all-MiniLM-L6-v2) comparing the chat with a description of each category.

The model reads English well and Chinese poorly, so Chinese leans on the keywords; a chat with
neither signal is "Other".
"""

from __future__ import annotations

import logging
import re
import threading
from functools import lru_cache

import numpy as np

from ai.insights.model import DEFAULT_CATEGORIES, OTHER

log = logging.getLogger("loomi.insights")

KEYWORDS: dict[str, str] = {
    "News": r"\bannounce[sd]?\b|\bheadlines?\b|\bbreaking\b|\bnewsletter\b|\bthis week in\b|\bweekly\b|\bdigest\b|\b(?:techcrunch|reuters|bloomberg|the verge|wired)\b|新闻|报道|快讯|头条",
    "Meetings": r"\bmeetings?\b|\bagenda\b|\bstand-?up\b|\bsync\b|\boffsite\b|\bboard (?:deck|meeting)\b|\breschedul|会议|开会|评审会|周会|例会|聚会|碰头|见面|主持|大会",
    "Funding": r"\bfunding\b|\braising\b|\bfundrais|\bseed\b|\bseries [a-d]\b|\binvestors?\b|\bvcs?\b|\bcap table\b|\bdata room\b|\bvaluation\b|\bbudget\b|\binvoice\b|\bterm sheet\b|融资|投资人|估值|预算|发票|天使轮",
    "R&D": r"\bdeploy|\bPRs?\b|\bpull request\b|\bbuild\b|\bbugs?\b|\bcommits?\b|\bcode\b|\bbenchmark|\blatency\b|\bAPI\b|\bstaging\b|\brelease\b|\bCI\b|\btests?\b|\bmigration\b|\bwebhook\b|\blogs?\b|\brepo\b|\bLOOMI_|代码|研发|接口|日志|回滚|服务|检索|延迟|上线|测试|网关|部署|报警",
    "Partnerships": r"\bpartner(?:s|ship)?\b|\brenewal\b|\bsigned\b|\bcontract\b|\bdeal\b|\bcustomers?\b|\bclients?\b|\bintro(?:duction)?\b|合作|合同|签约|客户|伙伴",
    "User Growth": r"\bsign-?ups?\b|\bactivation\b|\bretention\b|\bfunnel\b|\breferral\b|\bgrowth\b|\bDAU\b|\bMAU\b|\bchurn\b|\bconversion\b|新增用户|留存|增长|渠道|转化|日活",
    "Branding": r"\blogos?\b|\bbrand(?:ing)?\b|\bdesigner\b|\bvisual identity\b|\bposters?\b|品牌|海报|标志|视觉|设计稿",
    "Marketing": r"\bmarketing\b|\bcampaigns?\b|\bpromo(?:tion)?\b|\blaunch event\b|\bads?\b|\bSEO\b|推文|公众号|宣传|发布会|营销|推广|文案",
    "HR & Recruiting": r"\bhiring\b|\bcandidates?\b|\binterviews?\b|\brecruit|\bheadcount\b|\boffer letter\b|\bonboarding\b|面试|候选人|招聘|入职|离职|\bHR\b",
}
_COMPILED = {name: re.compile(pattern, re.I) for name, pattern in KEYWORDS.items()}

DESCRIPTIONS = {
    "News": "industry news headlines and articles about companies and technology",
    "Meetings": "scheduling a meeting, agenda, calendar invite, meeting moved to another time",
    "Funding": "fundraising from investors, venture capital, seed round, budget and invoices",
    "R&D": "software engineering: code review, bugs, builds, deploys, releases, performance",
    "Partnerships": "business partnership, customer deal, contract signed, renewal with a company",
    "User Growth": "user growth metrics: signups, activation, retention, referral funnel",
    "Branding": "brand identity, logo files, visual design, posters",
    "Marketing": "marketing campaign, social media posts, promotion, launch event copy",
    "HR & Recruiting": "hiring candidates, job interviews, recruiting, headcount plan",
}
SIMILARITY_FLOOR = 0.40  # below this the nearest description is a guess, not a topic
_lock = threading.Lock()


@lru_cache(maxsize=1)
def _description_vectors() -> tuple[object, np.ndarray] | None:
    try:
        from ai.local.embeddings import get_embedder

        embedder = get_embedder()
    except Exception as err:  # noqa: BLE001 - the model is optional; keywords still work
        log.warning("insights: embeddings unavailable (%s); categories from keywords only", err)
        return None
    return embedder, embedder.embed([DESCRIPTIONS[c] for c in DEFAULT_CATEGORIES])


def embed(texts: list[str]) -> np.ndarray | None:
    """Unit vectors for `texts` with the shipped model, or None when it is not installed."""
    loaded = _description_vectors()
    if loaded is None or not texts:
        return None
    embedder, _ = loaded
    with _lock:
        return embedder.embed(texts)  # type: ignore[attr-defined]


def embed_messages(msgs: list, stored: dict[str, np.ndarray]) -> np.ndarray | None:  # list[Msg]
    """Vectors for `msgs`: the indexer's stored ones where present, the rest embedded now."""
    missing = [m for m in msgs if m.id not in stored]
    fresh = embed([m.text[:1000] for m in missing]) if missing else None
    if missing and fresh is None:
        return None
    made = {m.id: v for m, v in zip(missing, fresh if fresh is not None else [])}
    return np.stack([stored[m.id] if m.id in stored else made[m.id] for m in msgs]) if msgs else None


def categorize(texts: list[str], vectors: np.ndarray | None, allowed: tuple[str, ...] = DEFAULT_CATEGORIES) -> list[str]:
    """At most two categories for a chat's messages (`vectors`: their embeddings, if any)."""
    joined = "\n".join(texts)
    hits = {name: len(_COMPILED[name].findall(joined)) for name in allowed if name in _COMPILED}
    chosen = sorted((n for n, h in hits.items() if h), key=lambda n: (-hits[n], allowed.index(n)))
    if not chosen and vectors is not None and len(vectors):
        loaded = _description_vectors()
        if loaded is not None:
            centroid = vectors.mean(axis=0)
            centroid = centroid / (np.linalg.norm(centroid) or 1.0)
            sims = loaded[1] @ centroid
            best = int(np.argmax(sims))
            if sims[best] >= SIMILARITY_FLOOR and DEFAULT_CATEGORIES[best] in allowed:
                chosen = [DEFAULT_CATEGORIES[best]]
    return chosen[:2] or [OTHER]
