"""Loopback fakes of chat platforms that speak the real wire protocols.

Why: connectors are tested with the real platform SDKs as clients, so the fakes - not
mocks of the SDKs - are where platform behaviour (paging, acks, retries, rate limits,
redelivery) is modelled. Each fake is an aiohttp server on 127.0.0.1 with an OS-chosen
port, run inside the test's event loop: ``async with FakeSlack() as fake: ...``.
"""

from tests.fakes.slack import FakeSlack, HttpDelivery
from tests.fakes.telegram import FakeTelegram, WebhookDelivery

__all__ = ["FakeSlack", "FakeTelegram", "HttpDelivery", "WebhookDelivery"]
