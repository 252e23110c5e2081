"""WhatsApp Business numbers through Meta's Cloud API: Meta POSTs each message and delivery
status to `/api/whatsapp/webhook/{accountId}` signed with the app secret
(`X-Hub-Signature-256`), after a GET verification echo when the URL is saved in the app
dashboard; sending is `POST /{phone-number-id}/messages` on the Graph API.

`webhook.py` verifies and splits deliveries (pure); `inbound.py` normalizes (pure);
`graph.py` speaks to the Graph API and maps its errors; `setup.py` checks pasted
credentials; `outbound.py` sends; `connector.py` wires them.
"""
