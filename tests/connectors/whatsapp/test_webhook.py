"""The webhook half: Meta's verification echo, X-Hub-Signature-256 checks, splitting a
delivery into one event per message and status."""

from __future__ import annotations

import orjson
import pytest

from connectors.base import WebhookRejected, WebhookRequest
from connectors.whatsapp.webhook import handle_webhook, verify_webhook
from tests.connectors.whatsapp.conftest import ALICE, APP_SECRET, VERIFY, account
from tests.fakes.whatsapp import Meta


def request(body: bytes, headers: dict[str, str] | None = None, query: dict[str, str] | None = None) -> WebhookRequest:
    return WebhookRequest(headers={k.lower(): v for k, v in (headers or {}).items()}, body=body, query=query or {},
                          account=account())


def test_verification_echoes_the_challenge_only_for_our_token() -> None:
    query, challenge = Meta.verification(VERIFY)
    reply = verify_webhook(request(b"", query=query))
    assert reply.text == challenge and reply.content_type == "text/plain"
    for bad in ({**query, "hub.verify_token": "guess"}, {**query, "hub.mode": "unsubscribe"}, {}):
        with pytest.raises(WebhookRejected) as err:
            verify_webhook(request(b"", query=bad))
        assert err.value.status == 403


def test_a_signed_delivery_becomes_one_event_per_message_and_status(meta: Meta) -> None:
    first, id1 = meta.message(ALICE, "Alice", text="one")
    second, id2 = meta.message("447700900123", "Bob", text="two")
    status = meta.status("wamid.ours", "delivered", ALICE)
    value = first["entry"][0]["changes"][0]["value"]
    value["messages"] += second["entry"][0]["changes"][0]["value"]["messages"]
    value["contacts"] += second["entry"][0]["changes"][0]["value"]["contacts"]
    value["statuses"] = status["entry"][0]["changes"][0]["value"]["statuses"]
    body, headers = meta.signed(first)
    reply = handle_webhook(request(body, headers))
    assert reply.status == 200
    assert [e.delivery_id for e in reply.events] == [id1, id2, "wamid.ours:delivered"]
    assert reply.events[1].payload["contact"]["profile"]["name"] == "Bob"


@pytest.mark.parametrize("header", [None, "sha256=" + "0" * 64, "sha1=abc", "forged"])
def test_missing_or_forged_signatures_are_refused(meta: Meta, header: str | None) -> None:
    delivery, _ = meta.message(ALICE, "Alice", text="forged")
    body = orjson.dumps(delivery)
    with pytest.raises(WebhookRejected) as err:
        handle_webhook(request(body, {"X-Hub-Signature-256": header} if header else {}))
    assert err.value.status == 401


def test_signed_with_another_secret_or_body_changed_after_signing_is_refused(meta: Meta) -> None:
    delivery, _ = meta.message(ALICE, "Alice", text="hi")
    body, headers = meta.signed(delivery, app_secret="not-" + APP_SECRET)
    with pytest.raises(WebhookRejected):
        handle_webhook(request(body, headers))
    body, headers = meta.signed(delivery)
    with pytest.raises(WebhookRejected):
        handle_webhook(request(body.replace(b"hi", b"ho"), headers))


def test_another_numbers_changes_and_other_objects_are_not_ours(meta: Meta) -> None:
    other = meta.delivery(messages=[{"from": ALICE, "id": "wamid.z", "timestamp": "1", "type": "text",
                                     "text": {"body": "x"}}], phone_number_id="999999999")
    body, headers = meta.signed(other)
    assert handle_webhook(request(body, headers)).events == []
    body, headers = meta.signed({"object": "page", "entry": []})
    with pytest.raises(WebhookRejected) as err:
        handle_webhook(request(body, headers))
    assert err.value.status == 400
