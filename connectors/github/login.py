"""Who signed in with GitHub: `GET {api}/user`, and `GET {api}/user/emails` when the email is private.

A public profile email is always verified (GitHub only lets verified addresses be public);
a private one is read from /user/emails (scope `user:email`) and must be the primary,
verified address. Anything else is refused rather than guessed.
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


class GitHubLogin:
    platform: ClassVar[str] = "github"

    def __init__(self, settings: LoginSettings) -> None:
        self.settings = settings

    async def profile(self, token: dict[str, Any]) -> LoginProfile:
        headers = {
            "Authorization": f"Bearer {access_token(token)}",
            "Accept": "application/vnd.github+json",
            "X-GitHub-Api-Version": "2022-11-28",
            "User-Agent": "openloomi-hub",
        }
        async with httpx.AsyncClient(base_url=api_root(self.settings), headers=headers, timeout=20) as http:
            user = await get_json(http, "/user", "GitHub")
            if not isinstance(user, dict) or user.get("id") is None:
                raise LoginRefused("provider_error", "GitHub /user named nobody")
            email = clean_email(user.get("email"))
            if email is None:
                email = primary_verified(await get_json(http, "/user/emails", "GitHub"))
        login = str(user.get("login") or email.split("@")[0])
        return LoginProfile(
            email=email,
            name=clean_name(user.get("name"), login),
            avatar_url=clean_avatar(user.get("avatar_url")),
            provider_user_id=str(user["id"]),
        )


def primary_verified(emails: Any) -> str:
    """The primary address of a /user/emails answer, if GitHub has verified it."""
    if not isinstance(emails, list):
        raise LoginRefused("provider_error", "GitHub /user/emails is not a list")
    for entry in emails:
        if isinstance(entry, dict) and entry.get("primary"):
            email = clean_email(entry.get("email"))
            if email and entry.get("verified") is True:
                return email
            break
    raise EmailUnverified("the GitHub account has no verified primary email")
