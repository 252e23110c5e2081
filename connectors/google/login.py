"""Who signed in with Google: OpenID Connect userinfo, `GET {api}/oauth2/v3/userinfo`.

Userinfo is asked with the access token just obtained over TLS from the token endpoint, so
nothing has to be checked by signature. Only `email_verified` addresses are accepted.
"""

from __future__ import annotations

from typing import Any, ClassVar

import httpx

from connectors.login import (
    EmailUnverified,
    LoginProfile,
    LoginRefused,
    LoginSettings,
    access_token,
    api_root,
    clean_avatar,
    clean_email,
    clean_name,
    get_json,
)


class GoogleLogin:
    platform: ClassVar[str] = "google"

    def __init__(self, settings: LoginSettings) -> None:
        self.settings = settings

    async def profile(self, token: dict[str, Any]) -> LoginProfile:
        headers = {"Authorization": f"Bearer {access_token(token)}", "Accept": "application/json"}
        async with httpx.AsyncClient(base_url=api_root(self.settings), headers=headers, timeout=20) as http:
            info = await get_json(http, "/oauth2/v3/userinfo", "Google")
        if not isinstance(info, dict) or not info.get("sub"):
            raise LoginRefused("provider_error", "Google userinfo named nobody")
        email = clean_email(info.get("email"))
        # some Google answers carry the flag as the string "true"
        if email is None or info.get("email_verified") not in (True, "true"):
            raise EmailUnverified("the Google account's email is not verified")
        return LoginProfile(
            email=email,
            name=clean_name(info.get("name"), email.split("@")[0]),
            avatar_url=clean_avatar(info.get("picture")),
            provider_user_id=str(info["sub"]),
        )
