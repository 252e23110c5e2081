"""The export parsers and format detection on their own (no database): the layouts and edge
cases that decide what a record is."""

from __future__ import annotations

import io
import zipfile

import orjson
import pytest

from imports import telegram_export, whatsapp_export
from imports.detect import Options, detect, parse_export
from imports.records import BadInput
from tests.imports import exports


def test_detection_by_content() -> None:
    assert detect(exports.slack_zip()) == "slack"
    assert detect(exports.slack_zip(top_folder="Acme Slack export")) == "slack"
    assert detect(orjson.dumps(exports.telegram_chat())) == "telegram"  # one line, compact
    assert detect(orjson.dumps(exports.telegram_full(), option=orjson.OPT_INDENT_2)) == "telegram"
    assert detect(exports.IOS_CHAT.encode()) == "whatsapp" and detect(exports.ANDROID_CHAT.encode()) == "whatsapp"
    line = {"platform": "slack", "account": {"id": "T"}, "chat": {"id": "C"}, "id": "1", "ts": 1, "text": "x"}
    assert detect(orjson.dumps(line) + b"\n" + orjson.dumps(line)) == "jsonl"
    assert detect(orjson.dumps(line)) == "jsonl"
    assert detect(orjson.dumps({"messages": [{"messageId": "1"}]})) == "openloomi"
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as z:
        z.writestr("notes.md", "hello")
    with pytest.raises(BadInput, match="neither a Slack export"):
        detect(buffer.getvalue())


def test_whatsapp_us_month_first_12_hour() -> None:
    text = "[1/31/23, 9:15:02 AM] Ann: morning\n[1/31/23, 12:05:00 PM] Ben: noon\n[2/1/23, 12:00:00 AM] Ann: midnight\n"
    records, _ = whatsapp_export.parse(text, me="Ann")
    assert [r.sent_at for r in records] == [1_675_156_502_000, 1_675_166_700_000, 1_675_209_600_000]


def test_whatsapp_ambiguous_dates_are_day_first_and_contradictions_refused() -> None:
    records, _ = whatsapp_export.parse("01/02/2023, 10:00 - Ann: hi\n", me="Ann")
    assert records[0].sent_at == 1_675_245_600_000  # 1 February
    with pytest.raises(BadInput) as err:
        whatsapp_export.parse("13/01/2023, 10:00 - Ann: hi\n01/13/2023, 10:00 - Ann: yo\n", me="Ann")
    assert err.value.line == 2 and "contradicts" in err.value.problem


def test_whatsapp_text_before_the_first_message_is_named() -> None:
    with pytest.raises(BadInput) as err:
        whatsapp_export.parse("\nhello there\n01/02/2023, 10:00 - Ann: hi\n", me="Ann")
    assert err.value.line == 2


def test_whatsapp_ids_are_stable_and_independent_of_time_zone() -> None:
    a, _ = whatsapp_export.parse(exports.IOS_CHAT, me="Alice")
    b, _ = whatsapp_export.parse(exports.IOS_CHAT, me="Alice", tz="America/New_York")
    assert [r.native_id for r in a] == [r.native_id for r in b] and len({r.native_id for r in a}) == len(a)
    assert a[0].sent_at - b[0].sent_at == -5 * 3_600_000
    assert whatsapp_export.chat_from_filename("WhatsApp Chat with Bob (2).txt") == "Bob"


def test_telegram_ids_are_marked_like_live_telegram() -> None:
    assert telegram_export.chat_id(42, "private_group") == "-42"
    assert telegram_export.chat_id(42, "public_channel") == "-10042"
    assert telegram_export.chat_id(42, "personal_chat") == "42"


def test_telegram_personal_chat_knows_me_without_being_told() -> None:
    chat = exports.telegram_full()["chats"]["list"][1]
    records, _ = telegram_export.parse(chat)
    assert [(r.native_id, r.is_self, r.account_id) for r in records] == [("10", True, "111"), ("11", False, "111")]


def test_telegram_me_by_id_and_ambiguity() -> None:
    chat = exports.telegram_chat()
    records, _ = telegram_export.parse(chat, me="222")
    assert {r.native_id for r in records if r.is_self} == {"3", "5", "7"}
    chat["messages"].append(exports.tg_message(99, exports.T0 + 999, "Bob", "user333", "another Bob"))
    with pytest.raises(BadInput, match="several senders"):
        telegram_export.parse(chat, me="Bob")


def test_slack_me_must_name_one_user() -> None:
    with pytest.raises(BadInput, match="not a user id or name"):
        parse_export(exports.slack_zip(), Options(me="nobody"))
    parsed = parse_export(exports.slack_zip(), Options(me="小明"))
    assert {r.sender_id for r in parsed.records if r.is_self} == {exports.BOB}


SAMPLES = {
    "slack": exports.slack_zip(),
    "telegram": orjson.dumps(exports.telegram_full(), option=orjson.OPT_INDENT_2),
    "ios": exports.IOS_CHAT.encode(),
    "android": exports.ANDROID_CHAT.encode(),
}


@pytest.mark.parametrize("kind", sorted(SAMPLES))
def test_damaged_exports_give_bad_input_never_a_crash(kind: str) -> None:
    """Real exports with bytes flipped, cut or spliced: parsing either succeeds or raises
    BadInput (a 400), never anything that would be a 500."""
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    data = SAMPLES[kind]

    @settings(max_examples=150, deadline=None, database=None, derandomize=True, suppress_health_check=list(HealthCheck))
    @given(st.lists(st.tuples(st.integers(0, len(data) - 1), st.binary(min_size=0, max_size=4)), min_size=1, max_size=4),
           st.integers(1, len(data)))
    def run(edits: list[tuple[int, bytes]], cut: int) -> None:
        damaged = bytearray(data[:cut])
        for at, chunk in edits:
            damaged[at : at + len(chunk)] = chunk
        for options in (Options(me="Alice"), Options(guess_me=True)):
            try:
                parse_export(bytes(damaged), options)
            except BadInput:
                pass

    run()


def test_android_subject_changes_are_system_lines() -> None:
    text = ('01/02/2023, 10:00 - Ann: hi\n01/02/2023, 10:01 - Ben changed the subject from "Trip: 2023" to "Trip: 2024"\n'
            '01/02/2023, 10:02 - Ben: ok\n')
    records, ignored = whatsapp_export.parse(text, me="Ann")
    assert [r.sender_name for r in records] == ["Ann", "Ben"] and sum(ignored.values()) == 1


def test_old_telegram_exports_without_unixtime_use_tz() -> None:
    chat = exports.telegram_chat()
    for msg in chat["messages"]:
        msg.pop("date_unixtime")
        msg.pop("edited_unixtime", None)
    utc, _ = telegram_export.parse(chat, me="Alice")
    berlin, _ = telegram_export.parse(chat, me="Alice", tz="Europe/Berlin")
    assert utc[0].sent_at == (exports.T0 + 60) * 1000 and utc[0].sent_at - berlin[0].sent_at == 3_600_000
    assert utc[1].edited_at == (exports.T0 + 300) * 1000  # `edited` alone
