"""`GET /status`: one page for the signed-in person: their accounts, each listener's state,
worker, last event, lag and ingest rate, and an ingest-rate chart of the last hour drawn as
inline SVG. Nothing is loaded from elsewhere (the CSP says so): no script, no CDN.

Who sees it: the session cookie's or bearer token's person, and only their own accounts.
For a browser without the cookie (a headless check, a link printed in a terminal),
`POST /api/status/link` gives a single-use code valid for LINK_SECONDS that renders the
page once for the person who asked; it grants nothing else and is gone after one use.
"""

from __future__ import annotations

import html
import secrets
import time
from datetime import datetime, timezone
from typing import Any

from starlette.requests import Request
from starlette.responses import HTMLResponse
from starlette.routing import Route

from api.auth import Principal, authenticate, hub_of
from api.endpoint import endpoint
from api.errors import unauthorized
from loomi.hub import Hub
from store.users import get_user
from workers.metrics import accounts_view, cluster_facts, ingested_per_minute

LINK_PREFIX = "loomi:status-link:"  # + code -> user id, single use
LINK_SECONDS = 60
CHART_MINUTES = 60
RATE_MINUTES = 5
CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
STATE_COLOURS = {"connected": "#1a7f37", "connecting": "#9a6700", "backoff": "#bc4c00", "needs_reauth": "#cf222e", "stopped": "#6e7781"}


@endpoint()
async def status_link(request: Request, user: Principal):
    """A single-use link to your status page, valid for a minute (for a browser without your cookie)."""
    hub = hub_of(request)
    code = secrets.token_urlsafe(24)
    await hub.redis.set(LINK_PREFIX + code, user.id, ex=LINK_SECONDS)
    return {"url": f"/status?code={code}", "expiresIn": LINK_SECONDS}


async def _viewer(request: Request) -> tuple[dict[str, Any], bool]:
    """(the person, whether they came with a single-use code)."""
    hub = hub_of(request)
    code = request.query_params.get("code")
    if code:
        user_id = await hub.redis.getdel(LINK_PREFIX + code)
        if user_id is None:
            raise unauthorized("this status link was used already or has expired")
        async with hub.engine.connect() as conn:
            user = await get_user(conn, user_id.decode())
        if user is None:
            raise unauthorized("no such user")
        return user, True
    return (await authenticate(request)).user, False


def _when(ms: int | None, now_ms: int) -> str:
    if not ms:
        return "never"
    ago = max(now_ms - ms, 0) // 1000
    stamp = datetime.fromtimestamp(ms / 1000, tz=timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
    span = f"{ago} s ago" if ago < 120 else f"{ago // 60} min ago" if ago < 7200 else f"{ago // 3600} h ago"
    return f'<time datetime="{stamp}" title="{stamp}">{span}</time>'


def chart(per_minute: list[int], width: int = 600, height: int = 120) -> str:
    """Bars of messages per minute, oldest on the left, with the peak written on the axis."""
    peak = max(per_minute) if per_minute and max(per_minute) > 0 else 1
    step = width / max(len(per_minute), 1)
    bars = []
    for i, n in enumerate(per_minute):
        h = round(n / peak * (height - 20), 1)
        bars.append(
            f'<rect class="bar" x="{i * step + 1:.1f}" y="{height - 14 - h:.1f}" width="{max(step - 2, 1):.1f}" '
            f'height="{h}" data-count="{n}"><title>{n} message(s)</title></rect>'
        )
    return (
        f'<svg id="ingest-chart" xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img" aria-label="messages stored per minute, last {len(per_minute)} minutes">'
        f'<line x1="0" y1="{height - 14}" x2="{width}" y2="{height - 14}" stroke="#d0d7de"/>'
        f'<g fill="#0969da">{"".join(bars)}</g>'
        f'<text x="0" y="{height - 2}" font-size="10" fill="#57606a">-{len(per_minute)} min</text>'
        f'<text x="{width}" y="{height - 2}" font-size="10" fill="#57606a" text-anchor="end">now</text>'
        f'<text x="0" y="10" font-size="10" fill="#57606a">peak {peak if max(per_minute or [0]) else 0}/min</text>'
        "</svg>"
    )


async def render(hub: Hub, user: dict[str, Any], *, refresh: bool) -> str:
    now_ms = int(time.time() * 1000)
    accounts = await accounts_view(hub, user["id"])
    minutes = await ingested_per_minute(hub.redis, [a["id"] for a in accounts], CHART_MINUTES, now_ms)
    facts = await cluster_facts(hub).get(hub)
    per_minute = [sum(counts.values()) for _, counts in minutes]
    recent = minutes[-RATE_MINUTES:]
    rows = []
    for account in accounts:
        last_hour = sum(counts.get(account["id"], 0) for _, counts in minutes)
        rate = sum(counts.get(account["id"], 0) for _, counts in recent) / RATE_MINUTES
        state = account["state"] if account["enabled"] else "stopped"
        colour = STATE_COLOURS.get(state, "#6e7781")
        lag = f"{account['lag_ms'] / 1000:.1f} s" if account["lag_ms"] is not None else "–"
        rows.append(
            f'<tr class="account" data-account-id="{html.escape(account["id"])}" data-state="{html.escape(state)}">'
            f'<td>{html.escape(account["name"])}</td><td>{html.escape(account["platform"])}</td>'
            f'<td><span class="state" style="background:{colour}">{html.escape(state)}</span>'
            f'<div class="detail">{html.escape(account["detail"][:200])}</div></td>'
            f'<td>{html.escape(account["worker"] or "–")}</td><td>{_when(account["last_event_at"], now_ms)}</td>'
            f'<td>{lag}</td><td class="num">{rate:.1f}/min</td><td class="num" data-last-hour="{last_hour}">{last_hour}</td></tr>'
        )
    empty = '<tr><td colspan="8" class="empty">No accounts connected yet.</td></tr>'
    depth = sum(int(s["depth"]) for s in facts.streams.values())
    connected = sum(1 for a in accounts if a["state"] == "connected" and a["enabled"])
    meta = '<meta http-equiv="refresh" content="15">' if refresh else ""
    name = html.escape(user.get("name") or user.get("email") or "")
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">{meta}
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>openloomi hub · status</title>
<style>
body {{ font: 14px/1.4 system-ui, sans-serif; margin: 24px; color: #1f2328; background: #fff; }}
h1 {{ font-size: 20px; margin: 0 0 4px; }} h2 {{ font-size: 15px; margin: 20px 0 6px; }}
.summary span {{ display: inline-block; margin-right: 18px; }} .summary b {{ font-size: 18px; }}
table {{ border-collapse: collapse; width: 100%; max-width: 1100px; }}
th, td {{ text-align: left; padding: 6px 8px; border-bottom: 1px solid #d0d7de; vertical-align: top; }}
th {{ background: #f6f8fa; font-weight: 600; }} td.num {{ text-align: right; font-variant-numeric: tabular-nums; }}
.state {{ color: #fff; border-radius: 10px; padding: 1px 8px; font-size: 12px; }}
.detail {{ color: #57606a; font-size: 12px; max-width: 320px; }} .empty {{ color: #57606a; }}
.muted {{ color: #57606a; }}
</style></head>
<body>
<h1>Status</h1>
<div class="muted">signed in as <span id="viewer">{name}</span> · {datetime.fromtimestamp(now_ms / 1000, tz=timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")}</div>
<p class="summary" id="summary">
<span><b id="accounts-total">{len(accounts)}</b> accounts</span>
<span><b id="accounts-connected">{connected}</b> connected</span>
<span><b id="messages-last-hour">{sum(per_minute)}</b> messages in the last hour</span>
<span><b id="rate">{sum(per_minute[-RATE_MINUTES:]) / RATE_MINUTES:.1f}</b>/min over {RATE_MINUTES} min</span>
</p>
<h2>Messages stored per minute</h2>
{chart(per_minute)}
<h2>Accounts</h2>
<table id="accounts">
<thead><tr><th>account</th><th>platform</th><th>listener</th><th>worker</th><th>last event</th><th>lag</th><th>rate</th><th>last hour</th></tr></thead>
<tbody>{"".join(rows) or empty}</tbody>
</table>
<p class="muted" id="hub">hub: <span id="workers-alive">{facts.workers}</span> worker(s) alive ·
<span id="queue-depth">{depth}</span> event(s) waiting to be stored</p>
</body></html>
"""


async def status_page(request: Request) -> HTMLResponse:
    hub = hub_of(request)
    user, by_code = await _viewer(request)
    page = await render(hub, user, refresh=not by_code)
    return HTMLResponse(page, headers={"Content-Security-Policy": CSP, "Cache-Control": "no-store", "X-Frame-Options": "DENY", "Referrer-Policy": "no-referrer"})


routes = [
    Route("/status", status_page, methods=["GET"], include_in_schema=False),
    Route("/api/status/link", status_link, methods=["POST"]),
]
