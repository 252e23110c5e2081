"""The platform table: public API roots and OAuth endpoints as data, like a provider catalogue.

A connector reads its row here instead of hard-coding hosts, so `LOOMI_<PLATFORM>_BASE_URL`
can point every call (REST, token exchange, websocket discovery) at a loopback fake.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Platform:
    name: str
    base_url: str
    authorize_url: str | None = None  # a template over {base} where the host is the API's own
    token_url: str | None = None
    scopes: tuple[str, ...] = ()
    scope_separator: str = ","
    pkce: bool = False
    oauth_login: bool = False  # used to sign in to the hub (github, google), not a chat account
    extra_env: tuple[str, ...] = field(default=())  # per-platform extra settings, e.g. APP_TOKEN


PLATFORMS: dict[str, Platform] = {
    p.name: p
    for p in (
        Platform(
            "slack",
            "https://slack.com/api",
            authorize_url="https://slack.com/oauth/v2/authorize",
            token_url="{base}/oauth.v2.access",
            scopes=(
                "channels:history", "channels:read", "groups:history", "groups:read",
                "im:history", "im:read", "mpim:history", "mpim:read", "chat:write", "users:read",
            ),
            extra_env=("APP_TOKEN", "SIGNING_SECRET", "BOT_TOKEN"),
        ),
        Platform("telegram", "https://api.telegram.org"),
        Platform(
            "discord",
            "https://discord.com/api/v10",
            authorize_url="https://discord.com/oauth2/authorize",
            token_url="{base}/oauth2/token",
            scopes=("identify", "guilds", "bot"),
            scope_separator=" ",
        ),
        Platform("feishu", "https://open.feishu.cn"),
        Platform("dingtalk", "https://api.dingtalk.com"),
        Platform("qqbot", "https://api.sgroup.qq.com", extra_env=("TOKEN_URL",)),
        Platform("weixin", "https://ilinkai.weixin.qq.com"),
        Platform("whatsapp", "https://graph.facebook.com/v21.0"),
        Platform("imessage", "http://127.0.0.1:0"),
        Platform(
            "x",
            "https://api.twitter.com",
            authorize_url="https://twitter.com/i/oauth2/authorize",
            token_url="{base}/2/oauth2/token",
            scopes=("tweet.read", "users.read", "dm.read", "dm.write", "offline.access"),
            scope_separator=" ",
            pkce=True,
        ),
        Platform(
            "github",
            "https://api.github.com",
            authorize_url="https://github.com/login/oauth/authorize",
            token_url="https://github.com/login/oauth/access_token",
            scopes=("read:user", "user:email"),
            scope_separator=" ",
            oauth_login=True,
            extra_env=("AUTH_URL", "API_URL"),
        ),
        Platform(
            "google",
            "https://www.googleapis.com",
            authorize_url="https://accounts.google.com/o/oauth2/v2/auth",
            token_url="https://oauth2.googleapis.com/token",
            scopes=("openid", "email", "profile"),
            scope_separator=" ",
            pkce=True,
            oauth_login=True,
            extra_env=("AUTH_URL", "API_URL"),
        ),
    )
}
