"""The platform table: one row per platform, like a provider catalogue.

A row names the platform's connector (chat accounts) or sign-in provider (signing in to the
hub), its own settings model (`LOOMI_<PLATFORM>_*` beyond the shared ones), the abilities its
connector claims (a test checks each claim), and its public API root and OAuth endpoints as
data, so `LOOMI_<PLATFORM>_BASE_URL` can point every call (REST, token exchange, websocket
discovery) at a loopback fake. Adding a platform is its `connectors/<name>/` folder plus a row.
Classes are named by import path and loaded on first use, so this module imports nothing.
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
    connector: str | None = None  # "module:Class" of its chat connector
    login: str | None = None  # "module:Class" of its sign-in provider (github, google)
    settings_model: str | None = None  # "module:Class", a PlatformSettings subclass
    abilities: frozenset[str] = field(default=frozenset())  # what the connector claims, see ABILITIES

    @property
    def oauth_login(self) -> bool:
        """Used to sign in to the hub, not to connect a chat account."""
        return self.login is not None


# ability name -> the protocol in connectors/base.py that a connector claiming it implements
ABILITIES = (
    "oauth", "credentials", "login_flow", "webhook", "webhook_verify", "backfill", "app_listener", "disconnect",
    "local_listener",
)


def _abilities(*names: str) -> frozenset[str]:
    unknown = set(names) - set(ABILITIES)
    assert not unknown, f"unknown abilities {unknown}"
    return frozenset(names)


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
            connector="connectors.slack.connector:SlackConnector",
            settings_model="connectors.slack.settings:SlackSettings",
            abilities=_abilities("oauth", "webhook", "backfill"),
        ),
        Platform(
            "telegram",
            "https://api.telegram.org",
            connector="connectors.telegram.connector:TelegramConnector",
            abilities=_abilities("credentials", "webhook", "disconnect"),
        ),
        Platform(
            "telegram_user",  # a person's own account over MTProto (Telethon picks the data centres)
            "https://api.telegram.org",  # unused: MTProto addresses come from Telethon's DC table
            connector="connectors.telegram_user.connector:TelegramUserConnector",
            settings_model="connectors.telegram_user.settings:TelegramUserSettings",
            abilities=_abilities("login_flow", "backfill"),
        ),
        Platform(
            "discord",
            "https://discord.com/api/v10",
            authorize_url="https://discord.com/oauth2/authorize",
            token_url="{base}/oauth2/token",
            scopes=("identify", "guilds", "bot"),
            scope_separator=" ",
            connector="connectors.discord.connector:DiscordConnector",
            settings_model="connectors.discord.settings:DiscordSettings",
            abilities=_abilities("oauth", "backfill", "app_listener"),
        ),
        Platform(
            "feishu",
            "https://open.feishu.cn",
            connector="connectors.feishu.connector:FeishuConnector",
            abilities=_abilities("credentials", "webhook", "backfill"),
        ),
        Platform(
            "dingtalk",
            "https://api.dingtalk.com",
            connector="connectors.dingtalk.connector:DingTalkConnector",
            abilities=_abilities("credentials", "webhook"),
        ),
        Platform(
            "qqbot",
            "https://api.sgroup.qq.com",
            connector="connectors.qqbot.connector:QQBotConnector",
            settings_model="connectors.qqbot.settings:QQBotSettings",
            abilities=_abilities("credentials"),
        ),
        Platform(
            "weixin",
            "https://ilinkai.weixin.qq.com",
            connector="connectors.weixin.connector:WeixinConnector",
            abilities=_abilities("login_flow"),
        ),
        Platform(
            "wechat_oa",
            "https://api.weixin.qq.com",
            connector="connectors.wechat_oa.connector:WechatOaConnector",
            abilities=_abilities("credentials", "webhook", "webhook_verify"),
        ),
        Platform(
            "whatsapp",
            "https://graph.facebook.com/v21.0",
            connector="connectors.whatsapp.connector:WhatsAppConnector",
            abilities=_abilities("credentials", "webhook", "webhook_verify"),
        ),
        Platform(
            "imessage",
            "http://127.0.0.1:0",  # nothing remote: the Mac's chat.db is read from disk
            connector="connectors.imessage.connector:IMessageConnector",
            abilities=_abilities("credentials", "local_listener"),
        ),
        Platform(
            "x",
            "https://api.twitter.com",
            authorize_url="https://twitter.com/i/oauth2/authorize",
            token_url="{base}/2/oauth2/token",
            scopes=("tweet.read", "users.read", "dm.read", "dm.write", "offline.access"),
            scope_separator=" ",
            pkce=True,
            connector="connectors.x.connector:XConnector",
            settings_model="connectors.x.settings:XSettings",
            abilities=_abilities("oauth"),
        ),
        Platform(
            "github",
            "https://api.github.com",
            authorize_url="https://github.com/login/oauth/authorize",
            token_url="https://github.com/login/oauth/access_token",
            scopes=("read:user", "user:email"),
            scope_separator=" ",
            login="connectors.github.login:GitHubLogin",
            settings_model="connectors.login:LoginSettings",
        ),
        Platform(
            "google",
            "https://www.googleapis.com",
            authorize_url="https://accounts.google.com/o/oauth2/v2/auth",
            token_url="https://oauth2.googleapis.com/token",
            scopes=("openid", "email", "profile"),
            scope_separator=" ",
            pkce=True,
            login="connectors.google.login:GoogleLogin",
            settings_model="connectors.login:LoginSettings",
        ),
    )
}


def load_class(path: str) -> type:
    """Import "module:Class" (rows name their classes by path so this table imports nothing)."""
    import importlib

    module, _, name = path.partition(":")
    return getattr(importlib.import_module(module), name)
