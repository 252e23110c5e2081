"""WeChat Official Accounts (公众号) and WeCom (企业微信) apps through their server callback:
WeChat POSTs each message to `/api/wechat_oa/webhook/{accountId}` as XML, in plain or
encrypted ("safe") mode, after a GET signature check when the URL is configured. wechatpy
verifies, decrypts and parses; `send` uses the customer-service message API.

`webhook.py` checks signatures and decrypts (pure); `inbound.py` normalizes (pure);
`setup.py` checks pasted credentials; `outbound.py` sends; `connector.py` wires them.
"""
