"""The offline method: an insight from reply structure, addressing and EN/ZH patterns.

Reading the chat in order:
- a message is *addressed to the person* in a DM; in a group when it names them, replies to
  one of their messages, directly follows one of their messages, or continues (same sender,
  within minutes) a message that was addressed to them;
- an addressed request becomes a task for the person (`myTasks`); the person's promise or
  acknowledgement right after it joins that task; the person's own promise is a task too; a
  later "done"/"sent"/"搞定" of theirs closes their latest open task;
- an addressed question is `waitingForMe` until the person writes anything after it;
- the person's own question or request is `waitingForOthers` until someone else writes;
- spam and automated notices (codes, receipts, CI reports) ask nothing.
Dates resolve against each message's own send time; urgency compares them with the chat's newest
message, never with the clock, so the same messages always give the same insight.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import numpy as np

from ai.insights import categories as cats
from ai.insights.dates import resolve, same_day
from ai.insights.model import DEFAULT_CATEGORIES, OTHER, Draft, Item, Msg
from ai.insights.names import Names
from ai.insights.patterns import Acts, acts, is_automated, is_spam

CONTINUATION_MS = 10 * 60_000
FOLLOW_MS = 3 * 3600_000
TITLE_CHARS = 120
EMBED_RECENT = 40
MAX_ITEMS = 30  # per list, the newest: an insight is a summary, not a backlog
_IMPORTANT = re.compile(
    r"\$\s?\d|\b\d+k\b|\binvoice|\bpayment|\bbudget|\bcontract|\bcustomer|\bclient|\brenewal|\binvestor|\bfunding|\braising\b|\bseed\b|"
    r"\bcap table|\bdata room|\bboard\b|\bincident|\boutage|\bbilling|\bsecurity|\baudit\b|\bSOC ?2|\bkeys?\b|\bcredential|\blegal\b|"
    r"\bhiring|\bcandidate|\binterview|\boffer\b|\bCTO\b|\bCEO\b|\bexec|\bstripe\b|\bchurn|\bpassword|\broot\b|\breimburse|\bexpense|"
    r"支付|付款|合同|金额|客户|投资|融资|董事会|报警|故障|安全|密码|面试|候选人|招聘|合作|报销|发票|工资|费用|转账",
    re.I,
)
_TO_ALL = re.compile(r"\b(?:who|who's|whos|anyone|anybody|someone|somebody|everyone|everybody|all of you|folks|team)\b|谁|大家|有人|各位", re.I)
_WEIGHTY_CATEGORIES = {"Funding", "Partnerships", "HR & Recruiting"}


@dataclass
class _Open:
    kind: str  # my | me | others
    sources: list[Msg]
    due: int | None
    urgent: bool = False
    closed: bool = False
    extra_text: list[str] = field(default_factory=list)


def _clip(text: str, size: int = TITLE_CHARS) -> str:
    text = " ".join(text.split())
    return text if len(text) <= size else text[: size - 1].rstrip() + "…"


class Reader:
    """One pass over a chat's messages, oldest first."""

    def __init__(self, msgs: list[Msg], names: Names, is_dm: bool) -> None:
        self.msgs, self.names, self.is_dm = msgs, names, is_dm
        self.by_native = {m.native_id: m for m in msgs}
        self.acts: list[Acts] = [acts(m.text) for m in msgs]
        self.noise = [not m.is_self and (is_spam(m.text) or is_automated(m.text, m.sender_name)) for m in msgs]
        self.addressed = [False] * len(msgs)

    def _addressed(self, i: int) -> bool:
        m = self.msgs[i]
        if m.is_self or self.noise[i]:
            return False
        if self.is_dm or self.names.mentioned(m.text):
            return True
        target = self.by_native.get(m.reply_to or "")
        if target is not None and target.is_self:
            return True
        if i > 0:
            prev = self.msgs[i - 1]
            if prev.is_self and m.sent_at - prev.sent_at <= FOLLOW_MS and not m.reply_to and not _TO_ALL.search(m.text):
                return True
            if prev.sender_id == m.sender_id and self.addressed[i - 1] and m.sent_at - prev.sent_at <= CONTINUATION_MS:
                return True
        return False

    def _due(self, i: int) -> int | None:
        """The message's own date, else one from the same sender's next message (a continuation)."""
        m = self.msgs[i]
        due = resolve(m.text, m.sent_at)
        if due is None and i + 1 < len(self.msgs):
            nxt = self.msgs[i + 1]
            if nxt.sender_id == m.sender_id and nxt.sent_at - m.sent_at <= CONTINUATION_MS:
                due = resolve(nxt.text, nxt.sent_at)
        return due

    def _urgent(self, i: int) -> bool:
        if self.acts[i].urgent:
            return True
        prev = self.msgs[i - 1] if i else None
        return bool(prev and prev.sender_id == self.msgs[i].sender_id and self.acts[i - 1].urgent
                    and self.msgs[i].sent_at - prev.sent_at <= CONTINUATION_MS)

    def read(self) -> list[_Open]:
        items: list[_Open] = []
        last_request: _Open | None = None  # the newest addressed request not yet acknowledged
        for i, m in enumerate(self.msgs):
            a = self.acts[i]
            if m.is_self:
                for item in items:  # anything the person writes answers the questions before it
                    if item.kind == "me" and not item.closed:
                        item.closed = True
                mine = [it for it in items if it.kind == "my" and not it.closed]
                if a.done and mine and not a.question:
                    mine[-1].closed = True
                elif last_request is not None and (a.promise or a.ack):
                    last_request.sources.append(m)
                    if last_request.due is None:
                        last_request.due = resolve(m.text, m.sent_at)
                elif a.promise and not a.question:
                    sources = [m]
                    target = self.by_native.get(m.reply_to or "")
                    if target is not None and not target.is_self:
                        sources.insert(0, target)
                    elif i > 0 and not self.msgs[i - 1].is_self and self.addressed[i - 1]:
                        sources.insert(0, self.msgs[i - 1])
                    items.append(_Open("my", sources, resolve(m.text, m.sent_at), self._urgent(i)))
                last_request = None
                if (a.question or (a.request and not a.ack)) and not a.done:
                    items.append(_Open("others", [m], resolve(m.text, m.sent_at)))
                continue
            if self.noise[i]:
                continue
            for item in items:  # someone else wrote: the person's questions got an answer
                if item.kind == "others" and not item.closed:
                    item.closed = True
            self.addressed[i] = self._addressed(i)
            if not self.addressed[i]:
                continue
            if a.request:
                last_request = _Open("my", [m], self._due(i), self._urgent(i))
                items.append(last_request)
            elif a.question:
                items.append(_Open("me", [m], self._due(i), self._urgent(i)))
        return [it for it in items if not it.closed]


def _item(open_: _Open) -> Item:
    first = open_.sources[0]
    text = first.text if first.is_self else f"{first.who}: {first.text}"
    return Item(text=_clip(text, 300), source_message_ids=[m.id for m in open_.sources], due=open_.due)


def _central(msgs: list[Msg], vectors: np.ndarray | None, k: int) -> list[Msg]:
    """The k messages closest to the chat's centroid (extractive summary), in chat order."""
    if not msgs:
        return []
    if vectors is None or len(vectors) != len(msgs):
        return msgs[-k:]
    centroid = vectors.mean(axis=0)
    scores = vectors @ centroid
    top = sorted(np.argsort(-scores, kind="stable")[:k].tolist())
    return [msgs[i] for i in top]


def analyze(msgs: list[Msg], names: Names, *, is_dm: bool, chat_name: str | None,
            allowed_categories: tuple[str, ...] = DEFAULT_CATEGORIES, previous: Draft | None = None,
            stored_vectors: dict[str, np.ndarray] | None = None) -> Draft:
    """The insight for a chat (messages oldest first); `previous` carries open items whose
    messages are no longer in the window; `stored_vectors` (message id -> the indexer's
    embedding) spares embedding those messages again."""
    reader = Reader(msgs, names, is_dm)
    open_items = reader.read()
    as_of = max(m.sent_at for m in msgs)
    spam = [is_spam(m.text) for m in msgs]
    content = [m for m, noisy in zip(msgs, reader.noise) if not noisy and m.text.strip()]
    spam_chat = sum(spam) * 2 >= max(1, sum(not m.is_self for m in msgs))
    texts = [m.text for m in content]
    recent = content[-EMBED_RECENT:]  # the model's cost grows with the chat; its topic is in the recent part
    vectors = cats.embed_messages(recent, stored_vectors or {}) if texts else None
    categories = [OTHER] if spam_chat else cats.categorize(
        [m.text for m in msgs if not is_spam(m.text)], vectors, allowed_categories)
    if not content and not spam_chat:  # only notices: a feed is still about its topic
        categories = cats.categorize([m.text for m in msgs], None, allowed_categories)

    my_tasks = [_item(o) for o in open_items if o.kind == "my"]
    waiting_me = [_item(o) for o in open_items if o.kind == "me"]
    waiting_others = [_item(o) for o in open_items if o.kind == "others"]
    if previous is not None:
        seen = {m.id for m in msgs}
        for mine, old in ((my_tasks, previous.my_tasks), (waiting_me, previous.waiting_for_me), (waiting_others, previous.waiting_for_others)):
            mine[:0] = [it for it in old if it.source_message_ids and not set(it.source_message_ids) & seen]

    my_tasks, waiting_me, waiting_others = my_tasks[-MAX_ITEMS:], waiting_me[-MAX_ITEMS:], waiting_others[-MAX_ITEMS:]
    for_me = [o for o in open_items if o.kind in ("my", "me")]
    dues = [o.due for o in open_items if o.due is not None and o.kind in ("my", "me")]
    due_date = min(dues) if dues else None
    if any(o.urgent for o in for_me) or any(d <= as_of or same_day(d, as_of) for d in dues):
        urgency = "high"
    elif for_me or my_tasks or waiting_me:
        urgency = "medium"
    else:
        urgency = "low"

    def weighty(items: list[_Open]) -> bool:
        for o in items:
            for m in o.sources:
                if _IMPORTANT.search(m.text):
                    return True
        return False

    if for_me or my_tasks or waiting_me:
        importance = "high" if weighty(for_me) or set(categories) & _WEIGHTY_CATEGORIES else "medium"
    elif waiting_others:
        importance = "medium" if weighty([o for o in open_items if o.kind == "others"]) else "low"
    else:
        importance = "low"

    mentions = [m.id for m, noisy in zip(msgs, spam) if not m.is_self and not noisy and names.mentioned(m.text)]
    last_self = max((i for i, m in enumerate(msgs) if m.is_self), default=-1)
    unreplied = any(o.kind in ("my", "me") and msgs.index(o.sources[0]) > last_self for o in for_me)

    people: dict[str, int] = {}
    for m, noisy in zip(msgs, spam):
        if not m.is_self and not noisy:
            people[m.who] = people.get(m.who, 0) + 1
    people_list = sorted(people, key=lambda p: (-people[p], p))

    summary = _central(recent, vectors, 2)
    lead = (my_tasks or waiting_me or waiting_others or [None])[0]
    if lead is not None:
        title = _clip(lead.text)
    elif summary:
        title = _clip(f"{summary[0].who}: {summary[0].text}" if not summary[0].is_self else summary[0].text)
    else:
        title = _clip(f"{chat_name or 'Chat'}: {msgs[-1].text}" if msgs[-1].text else (chat_name or "Chat"))
    counts = []
    if my_tasks:
        counts.append(f"{len(my_tasks)} task{'s' if len(my_tasks) > 1 else ''} for you")
    if waiting_me:
        counts.append(f"{len(waiting_me)} question{'s' if len(waiting_me) > 1 else ''} waiting for your answer")
    if waiting_others:
        counts.append(f"waiting on others for {len(waiting_others)}")
    if spam_chat:
        counts.append("looks like spam")
    description = " ".join([f"{m.who}: {_clip(m.text, 200)}" for m in summary] + ([("; ".join(counts)).capitalize() + "."] if counts else []))

    next_actions = [f"Do: {_clip(it.text, 140)}" for it in my_tasks[:3]]
    next_actions += [f"Answer {it.text.split(':', 1)[0]}" for it in waiting_me[:3]]
    next_actions += [f"Follow up: {_clip(it.text, 120)}" for it in waiting_others[:2]]

    sources: list[str] = []
    for it in [*my_tasks, *waiting_me, *waiting_others]:
        sources += [s for s in it.source_message_ids if s not in sources]
    sources += [i for i in mentions if i not in sources]
    if not sources:
        sources = [m.id for m in summary]
    return Draft(
        title=title or "Chat", description=_clip(description, 2000), importance=importance, urgency=urgency,
        categories=categories, people=people_list[:50], my_tasks=my_tasks, waiting_for_me=waiting_me,
        waiting_for_others=waiting_others, next_actions=next_actions[:10], mentions=mentions[-500:],
        is_unreplied=unreplied, due_date=due_date, source_message_ids=sources[:500],
    )
