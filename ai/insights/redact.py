"""Secrets out before text leaves for an upstream; back in where the answer quotes them.

Replaced with numbered placeholders (`[SECRET_1]`): one-time codes (a code word near digits),
passwords (a password word before a token), API keys and tokens (known prefixes, long
high-entropy strings, bearer tokens, JWTs), card numbers (13-19 digits that pass Luhn). The
mapping stays in memory for the one call; the same secret gets the same placeholder.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from dataclasses import dataclass, field

_CODE = re.compile(
    r"(?:\b(?:code|passcode|otp|pin|verification|one[- ]time(?: pass(?:word|code))?)\b[^0-9\n]{0,24}?|(?:验证码|取件码|校验码|动态码|口令|提货码)[^0-9\n]{0,6}?)"
    r"(\d(?:[- ]?\d){3,7})(?!\d)",
    re.I,
)
_CODE_AFTER = re.compile(r"(?<![\d-])(\d{4,8})(?!\d)(?=\s*(?:is your|是您的|为您的)\s*(?:verification|login|one[- ]time|验证码)?)", re.I)
_PASSWORD = re.compile(
    r"(?:\b(?:password|passwd|pwd|pw|passphrase|pass)\b|密码|口令)\s*(?:is|was|=|:|：|是|为)?\s*[\"'“]?([^\s\"'”,，。;；]{4,128})",
    re.I,
)
_KEY_PREFIX = re.compile(
    r"\b((?:sk|pk|rk)[-_](?:live|test|proj|ant)?[-_]?[A-Za-z0-9_\-]{12,}|gh[pousr]_[A-Za-z0-9]{20,}|github_pat_[A-Za-z0-9_]{20,}|"
    r"xox[abposr]-[A-Za-z0-9-]{10,}|AKIA[0-9A-Z]{16}|AIza[0-9A-Za-z_\-]{30,}|glpat-[A-Za-z0-9_\-]{16,}|"
    r"eyJ[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]{8,}|\d{8,10}:[A-Za-z0-9_\-]{30,})"
)
_BEARER = re.compile(r"\b(?:bearer|token|api[_ -]?key|secret|apikey)\b\s*[:=]?\s*([A-Za-z0-9_\-\.]{16,})", re.I)
_LONG = re.compile(r"(?<![A-Za-z0-9_\-])([A-Za-z0-9_\-]{24,})(?![A-Za-z0-9_\-])")
_DIGITS = re.compile(r"(?<!\d)(\d(?:[ -]?\d){12,18})(?!\d)")


def luhn(number: str) -> bool:
    digits = [int(c) for c in number if c.isdigit()]
    if not 13 <= len(digits) <= 19:
        return False
    total = 0
    for i, d in enumerate(reversed(digits)):
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def _entropy(text: str) -> float:
    counts = Counter(text)
    return -sum(n / len(text) * math.log2(n / len(text)) for n in counts.values())


def _looks_random(token: str) -> bool:
    classes = sum(bool(re.search(p, token)) for p in (r"[a-z]", r"[A-Z]", r"\d"))
    return classes >= 2 and _entropy(token) >= 3.5 and not re.fullmatch(r"[a-z_\-]+", token)


@dataclass
class Redactor:
    """One per upstream call: `redact` texts on the way out, `restore` the answer."""

    secrets: dict[str, str] = field(default_factory=dict)  # placeholder -> secret

    def _placeholder(self, secret: str) -> str:
        for key, value in self.secrets.items():
            if value == secret:
                return key
        key = f"[SECRET_{len(self.secrets) + 1}]"
        self.secrets[key] = secret
        return key

    def redact(self, text: str) -> str:
        spans: list[tuple[int, int]] = []
        for pattern in (_KEY_PREFIX, _BEARER, _PASSWORD, _CODE, _CODE_AFTER):
            spans += [m.span(1) for m in pattern.finditer(text)]
        spans += [m.span(1) for m in _DIGITS.finditer(text) if luhn(m.group(1))]
        spans += [m.span(1) for m in _LONG.finditer(text) if _looks_random(m.group(1))]
        if not spans:
            return text
        merged: list[list[int]] = []
        for start, end in sorted(spans):
            if merged and start <= merged[-1][1]:
                merged[-1][1] = max(merged[-1][1], end)
            else:
                merged.append([start, end])
        out, last = [], 0
        for start, end in merged:
            out.append(text[last:start])
            out.append(self._placeholder(text[start:end]))
            last = end
        out.append(text[last:])
        return "".join(out)

    def restore(self, text: str) -> str:
        for key, value in self.secrets.items():
            text = text.replace(key, value)
        return text


def redact_all(texts: list[str]) -> tuple[list[str], Redactor]:
    redactor = Redactor()
    return [redactor.redact(t) for t in texts], redactor
