"""Sending: `POST /open-apis/im/v1/messages?receive_id_type=chat_id`, or a reply through
`POST /open-apis/im/v1/messages/{message_id}/reply` (in the thread when `thread_id` is set).

Each send carries a fresh `uuid`, which Feishu uses to drop a repeat of the same request
within an hour, so a call retried after a 429 cannot post twice. Feishu does not push a bot's
own messages back as events; backfill later finds them with `sender.id` = our app id, which
normalize marks is_self and the store merges with the outbound row by message id.
"""

from __future__ import annotations

import json
import time
import uuid

from lark_oapi.api.im.v1 import (
    CreateMessageRequest,
    CreateMessageRequestBody,
    ReplyMessageRequest,
    ReplyMessageRequestBody,
)

from connectors.base import Account, Outbound, Sent
from connectors.feishu.client import FeishuApi


async def send(base_url: str, account: Account, outbound: Outbound) -> Sent:
    api = FeishuApi.for_account(base_url, account)
    content = json.dumps({"text": outbound.text}, ensure_ascii=False)
    key = str(uuid.uuid4())
    parent = outbound.reply_to_id or outbound.thread_id
    if parent:
        body = (ReplyMessageRequestBody.builder().msg_type("text").content(content)
                .reply_in_thread(outbound.thread_id is not None).uuid(key).build())
        reply = ReplyMessageRequest.builder().message_id(parent).request_body(body).build()
        data = await api.call(lambda option: api.sdk.im.v1.message.areply(reply, option))
    else:
        body = (CreateMessageRequestBody.builder().receive_id(outbound.chat_id).msg_type("text")
                .content(content).uuid(key).build())
        create = CreateMessageRequest.builder().receive_id_type("chat_id").request_body(body).build()
        data = await api.call(lambda option: api.sdk.im.v1.message.acreate(create, option))
    message = data.get("data") or {}
    if not message.get("message_id"):
        raise ValueError("Feishu answered a send without a message_id")
    created = str(message.get("create_time") or "")
    return Sent(
        native_id=str(message["message_id"]),
        chat_id=str(message.get("chat_id") or outbound.chat_id),
        sent_at=int(created) if created.isdigit() else int(time.time() * 1000),
        raw=message,
        thread_id=message.get("root_id") or outbound.thread_id,
    )
