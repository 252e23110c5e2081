"""What one message does, from its words: asks, requests, promises, reports done, is urgent,
is spam or an automated notice. English and Chinese; small regexes, no model.

These read one message; who it is addressed to and whether it was answered is the job of
`offline`, which reads the reply structure of the whole chat.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_Q_START = re.compile(
    r"^(?:hey|hi|hello|so|and|also|btw|ok|okay|oh)?[,\s]*(?:@\S+\s+)?"
    r"(?:are|is|am|do|does|did|was|were|have|has|had|will|would|could|can|should|shall|may|might|what|what's|whats|when|where|who|whom|whose|why|how|which|any chance)\b",
    re.I,
)
_Q_ZH = re.compile(r"(吗|呢|么|嘛)[？?。!！\s]*$|什么|怎么|为什么|几点|多少|是否|能不能|可不可以|可以吗|方便吗|有没有|来不来|去不去|要不要|行不行|好不好|对不对|哪(个|里|天)|谁|何时|什么时候")
_REQ_EN = re.compile(
    r"\b(?:can|could|would|will) you\b(?!\s+(?:believe|imagine))|\bplease\b|\bpls\b|\bplz\b|\bkindly\b|\bneed you to\b|"
    r"\bmake sure\b|\bremember to\b|\bdon'?t forget\b|\bmind (?:sending|sharing|checking|taking)\b|"
    r"^(?:also,?\s+)?(?:send|share|review|check|fix|update|approve|sign|submit|call|email|ping|forward|prepare|rotate|change|book|schedule|own|take|look at|follow up)\b|"
    r"\b(?:send|share|forward) (?:me|us)\b|\bwant you to\b|\bi need (?:you|the|your)\b|\bcan i get\b|\blet me know\b|\blmk\b|"
    r"\bif you could\b|\bwould you mind\b|\bwhen you get a (?:sec|second|minute|chance)\b|"
    r"\b(?:need|want|expect)\b.{0,40}\bfrom you\b|\byou(?:'ll| will)? need to\b|\byou should\b",
    re.I,
)
_REQ_ZH = re.compile(
    r"请|麻烦|帮我|帮忙|帮个忙|记得|务必|发我|发给我|给我一|给我发|把.{1,30}?(?:发|给|交|提交|整理|准备|看|改|弄|做)|"
    r"你(?:马上|尽快|赶紧|赶快|先|得|负责|(?:去|来)(?!不))|需要你|提交|能否|可否|(?:看|改|弄|准备|查|处理|确认|跟进)一下"
)
_PROMISE_EN = re.compile(
    r"\bi'?ll\b|\bi will\b|\bi'?m going to\b|\bi am going to\b|\bwill do\b|\blet me\b|\bi can (?:do|take|handle|send|look)|\bon it\b|"
    r"\bi'?ll get (?:back|to it)\b|\bwill (?:send|share|review|fix|push|have|get|do|look|check|follow)\b",
    re.I,
)
_PROMISE_ZH = re.compile(r"我(?:会|来|去|先|再|马上|立刻|今天|今晚|明天|明早|后天|下周|这周|本周|周[一二三四五六日天]|星期|稍后|回头|晚点|尽快|争取|负责|这就)|马上(?:发|看|处理)|这就(?:发|去|弄)")
_ACK = re.compile(r"^(?:ok(?:ay)?|sure|yes|yep|yeah|got it|will do|on it|noted|roger|sounds good|thanks?|thank you|thx|ty|好的?|好|收到|嗯|可以|没问题|明白|了解|行)\b|^(?:好的?|收到|嗯|可以|没问题|明白|了解|行)", re.I)
_DONE = re.compile(
    r"\b(?:done|sent|finished|completed|submitted|fixed|merged|shipped|transferred|paid|uploaded|approved)\b(?!\s+(?:by|before|tomorrow|tonight|later))|"
    r"已(?:发|经发|完成|提交|处理|修复|转|付|上传)|发(?:过去)?了|搞定|做完|改好了|弄好了|完成了|转账了|付过了",
    re.I,
)
_URGENT = re.compile(r"\burgent\b|\basap\b|\bimmediately\b|\bright away\b|\bright now\b|\bemergency\b|\bcritical\b|\bp0\b|\bsev ?1\b|\boutage\b|\bis down\b|紧急|马上|尽快|立刻|立即|赶紧|十万火急|火速|报警|故障|宕机", re.I)
_SPAM = [
    re.compile(p, re.I)
    for p in (
        r"\bcongratulations\b|恭喜您?(?:获得|中奖)",
        r"\b(?:you(?:'ve| have)? (?:won|been selected)|winner|prize|gift ?card|free (?:gift|iphone|money)|claim (?:now|your))\b|中奖|领取|免费送",
        r"\b(?:click|tap) (?:here|the link|http)|\bbit\.ly/|\bt\.me/\+|点击链接",
        r"\b(?:guaranteed|100x|pump|airdrop|crypto signals|send \d+(?:\.\d+)? ?(?:eth|btc|usdt)|your wallet)\b",
        r"\b(?:limited (?:time|slots|offer)|last chance|act now|expires today|before it expires)\b|限时|名额有限",
        r"!!!|🚀🚀",
        r"\bearn \$?\d+.{0,12}(?:/|per |a )(?:day|hour|week)\b|\b(?:part[- ]time job|work from home|from home)\b|日赚|兼职",
        r"\b(?:hello|hi) dear\b|\bdear friend\b|\bwa\.me/|\badd my (?:whatsapp|telegram|wechat)\b|加我微信",
    )
]
_AUTOMATED = re.compile(
    r"\b(?:verification|login|security|one[- ]time|confirmation) (?:code|passcode|pin)\b|\bpasscode\b|\botp\b|do not (?:share|give) this code|never share|"
    r"\b(?:nightly|build #?\d+|jobs succeeded|report:|unsubscribe|no-?reply|was approved on card|advanced to level)\b|验证码|取件码|【[^】]{1,12}】",
    re.I,
)
_BOT_NAMES = re.compile(r"\b(?:bot|alerts?|feed|notifications?|no-?reply|mee6|telegram|system)\b|速运|快递|银行|通知|助手", re.I)


@dataclass(frozen=True)
class Acts:
    question: bool
    request: bool
    promise: bool
    ack: bool
    done: bool
    urgent: bool


def acts(text: str) -> Acts:
    t = text.strip()
    sentences = [s for s in re.split(r"(?<=[.!?。！？\n])\s*", t) if s.strip()] or [t]
    question = "?" in t or "？" in t or any(_Q_START.match(s) for s in sentences) or bool(_Q_ZH.search(t))
    request = any(_REQ_EN.search(s) for s in sentences) or bool(_REQ_ZH.search(t))
    promise = bool(_PROMISE_EN.search(t) or _PROMISE_ZH.search(t))
    return Acts(
        question=question,
        request=request,
        promise=promise,
        ack=bool(_ACK.match(t)),
        done=bool(_DONE.search(t)),
        urgent=bool(_URGENT.search(t)),
    )


def spam_score(text: str) -> int:
    return sum(1 for p in _SPAM if p.search(text))


def is_spam(text: str) -> bool:
    return spam_score(text) >= 2


def is_automated(text: str, sender_name: str | None) -> bool:
    """A notice from a system (codes, receipts, CI reports, level-ups): nothing to answer."""
    return bool(_AUTOMATED.search(text)) or bool(sender_name and _BOT_NAMES.search(sender_name))
