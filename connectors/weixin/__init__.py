"""WeChat personal account over Tencent's iLink bot API (the ClawBot channel): QR login or a
pasted bot token, an HTTP long poll (`getupdates`) in, `sendmessage` out.

`client.py` is the iLink plumbing (headers, `ret`/`errcode`, -14, HTTP 429); `inbound.py`
normalizes a WeixinMessage (pure); `listen.py` long-polls with the `get_updates_buf` cursor;
`outbound.py` sends with the chat's newest `context_token`; `setup.py` is the QR login flow
and token check; `connector.py` wires them. Everything WeChat-personal lives in this folder.
"""
