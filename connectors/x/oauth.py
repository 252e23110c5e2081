"""OAuth 2 (authorization code with PKCE, machinery in connectors/oauth.py): a token answer,
first exchange or refresh, becomes an account by asking X who the token belongs to.

Credential keys of an X account (Account.credentials):
- `access_token`   bearer for every API call (X's live for 2 hours)
- `refresh_token`  with the `offline.access` scope; X rotates it on every refresh
- `expires_at`     ms, also on the AccountSpec, so workers/refresh.py renews it in time
- `scope`, `user_id`, `username`
"""

from __future__ import annotations

import time
from typing import Any

import tweepy

from connectors.base import AccountSpec
from connectors.x import client as x
from connectors.x.settings import XSettings


async def account_from_token(settings: XSettings, token: dict[str, Any]) -> AccountSpec:
    access_token = token.get("access_token") if isinstance(token, dict) else None
    if not access_token:
        raise ValueError("X's token answer has no access_token")
    expires_in = token.get("expires_in")
    expires_at = int(time.time() * 1000) + int(expires_in) * 1000 if expires_in else None
    credentials: dict[str, Any] = {"access_token": access_token, "refresh_token": token.get("refresh_token"),
                                   "scope": token.get("scope"), "expires_at": expires_at}
    api = x.api(settings.base_url, access_token)
    try:
        me = (await api.get_me(user_auth=False))["data"]
    except tweepy.HTTPException as err:
        raise x.refusal(err, {}) from None
    finally:
        await x.close(api)
    credentials.update(user_id=me["id"], username=me["username"])
    return AccountSpec(
        external_id=str(me["id"]),
        name=f"@{me['username']}",
        credentials={k: v for k, v in credentials.items() if v is not None},
        expires_at=expires_at,
    )
