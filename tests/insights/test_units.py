"""The offline method's parts on their own: dates, redaction, patterns, names."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from ai.insights.dates import resolve
from ai.insights.names import Names
from ai.insights.patterns import acts, is_automated, is_spam
from ai.insights.redact import Redactor, luhn


def ms(text: str) -> int:
    return int(datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp() * 1000)


def day(value: int | None) -> str | None:
    return datetime.fromtimestamp(value / 1000, tz=timezone.utc).strftime("%Y-%m-%d %H:%M") if value else None


MONDAY = "2026-03-02T09:00:00Z"


@pytest.mark.parametrize(
    ("text", "sent", "want"),
    [
        ("can you send the deck by Thursday?", MONDAY, "2026-03-05 23:59"),
        ("by Thursday", "2026-03-12T08:00:00Z", "2026-03-12 23:59"),  # said on a Thursday: today
        ("next Thursday works", MONDAY, "2026-03-12 23:59"),
        ("Partners meet Monday, so ideally by Sunday", "2026-03-14T17:00:00Z", "2026-03-15 23:59"),
        ("push a fix tonight", MONDAY, "2026-03-02 23:59"),
        ("tomorrow 9am", MONDAY, "2026-03-03 09:00"),
        ("due March 20th", MONDAY, "2026-03-20 23:59"),
        ("in 3 days", MONDAY, "2026-03-05 23:59"),
        ("明天上午十点前把方案发我", "2026-03-15T01:00:00Z", "2026-03-16 10:00"),
        ("请在本周五前提交", MONDAY, "2026-03-06 23:59"),
        ("二面安排在下周三", MONDAY, "2026-03-11 23:59"),
        ("同学聚会定在4月12号", MONDAY, "2026-04-12 23:59"),
        ("下午三点开会", MONDAY, None),
        ("no date here", MONDAY, None),
    ],
)
def test_dates_resolve_against_the_send_time(text: str, sent: str, want: str | None) -> None:
    assert day(resolve(text, ms(sent))) == want


def test_a_rerun_on_another_day_resolves_the_same() -> None:
    assert resolve("by Friday", ms(MONDAY)) == resolve("by Friday", ms(MONDAY))


@pytest.mark.parametrize(
    ("text", "secret"),
    [
        ("Login code: 48213. Do not give this code to anyone", "48213"),
        ("Your one-time passcode is 739-204. It expires in 10 minutes.", "739-204"),
        ("Temporary password: Wint3r!Sun#42 — change it", "Wint3r!Sun#42"),
        ("我的密码是 abc12345", "abc12345"),
        ("【顺丰速运】取件码 8823，如有疑问", "8823"),
        ("验证码：602913，5分钟内有效", "602913"),
        ("key sk-live-4f9aK2mQ8vX1zR7tY3pL0wE6 rotate it", "sk-live-4f9aK2mQ8vX1zR7tY3pL0wE6"),
        ("token ghp_abcdefghijklmnopqrstuvwxyz0123 leaked", "ghp_abcdefghijklmnopqrstuvwxyz0123"),
        ("Authorization: Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U", "eyJhbGciOiJIUzI1NiJ9"),
        ("card 4242 4242 4242 4242 exp 12/29", "4242 4242 4242 4242"),
        ("4111-1111-1111-1111", "4111-1111-1111-1111"),
    ],
)
def test_secrets_are_replaced_and_restored(text: str, secret: str) -> None:
    redactor = Redactor()
    out = redactor.redact(text)
    assert secret not in out and "[SECRET_1]" in out
    assert redactor.restore(out) == text


@pytest.mark.parametrize(
    "text",
    ["Deploy of v2.3 is going out at 4pm", "Signups are up 18% week over week", "PR #482 touches billing",
     "order 1234 5678 9012 3456 is not a card", "Bank acct 00-4471-2290", "P99 大概 40ms", "call me at 555-0100"],
)
def test_ordinary_text_is_left_alone(text: str) -> None:
    assert Redactor().redact(text) == text


def test_luhn() -> None:
    assert luhn("4242424242424242") and luhn("4111 1111 1111 1111")
    assert not luhn("4242424242424241") and not luhn("1234")


def test_patterns_en_and_zh() -> None:
    assert acts("Hey Alex, can you send me the Q3 deck?").request
    assert acts("Are you coming to dinner on Saturday?").question
    assert not acts("Are you coming to dinner on Saturday?").request
    assert acts("Sure, I'll send it over tomorrow morning.").promise
    assert acts("Done, sent via Zelle just now.").done
    assert acts("请把新版需求文档发给我").request
    assert acts("你那边文案什么时候能给？").question and not acts("你那边文案什么时候能给？").request
    assert acts("好的，我明天下午发给你").promise and acts("好的，我明天下午发给你").ack
    assert acts("线上支付服务报警了，紧急！").urgent
    assert is_spam("CONGRATULATIONS! You have been selected to receive a gift card. Click http://bit.ly/x")
    assert not is_spam("Congratulations on the launch, team!")
    assert acts("It'd be great if you could take a look when you get a sec").request
    assert acts("need a postmortem from you by Wednesday").request
    assert acts("BP 最新版你来准备一下").request and acts("Q2 的计划能否在周五之前给我一版？").request
    assert not acts("陈亚历你来不来？").request and acts("陈亚历你来不来？").question  # A-not-A asks
    assert is_spam("Hello dear, part-time job, earn $500/day from home! Add my WhatsApp: wa.me/1555")
    assert Redactor().redact("here: pw is Kx9#mLq2!vR ok") == "here: pw is [SECRET_1] ok"
    assert is_automated("Your verification code is 123456", "Bank")
    assert not is_automated("can you review my PR?", "Kim Park")


def test_names_whole_words_and_cjk() -> None:
    names = Names(["Alex Chen", "Alex", "alex.chen", "alexc", "陈亚历", "小陈"])
    assert names.mentioned("@alex.chen can you review") and names.mentioned("GG @alexc!") and names.mentioned("小陈，周日回家吗")
    assert names.mentioned("hey ALEX") and names.mentioned("陈亚历你来不来")
    assert not names.mentioned("Alexandra's farewell cake") and not names.mentioned("mail alex@example.com")
    assert not Names([]).mentioned("anything")


def test_a_long_backlog_is_clipped_to_the_newest_items() -> None:
    from ai.insights.model import Msg
    from ai.insights.offline import MAX_ITEMS, analyze

    msgs = [Msg(id=f"m{i}", native_id=f"n{i}", sender_id="U1", sender_name="Bob", is_self=False,
                text=f"can you check report {i}?", sent_at=1_772_442_000_000 + i * 60_000, reply_to=None) for i in range(MAX_ITEMS + 6)]
    draft = analyze(msgs, Names(["Sam"]), is_dm=True, chat_name="Bob")
    assert len(draft.my_tasks) == MAX_ITEMS and draft.my_tasks[-1].source_message_ids == [f"m{MAX_ITEMS + 5}"]
    assert draft.my_tasks[0].source_message_ids == ["m6"]
