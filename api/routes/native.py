"""Native module (/api/native/*): the assistant acting with the person's workspace skills.

What it covers: the agent providers (`GET /api/native/providers`, one: the hub's own agent on
the AI gateway), the enabled skills with the operations their SKILL.md declares
(`GET /api/native/skills`), running one operation (`POST /api/native/skills/run`), and the
agent itself (`POST /api/native/agent`, streamed), which answers with the enabled skills'
instructions in front of the model and, like `/api/ai/chat`, the person's own messages as
numbered sources.

A skill here is what `/api/workspace/skills` stores (store.skills): SKILL.md text whose front
matter may declare `operations`, a list of `{name, description?, prompt?}` (or a mapping of
name to description or to that object). A skill that declares none has one operation, `run`.
Running an operation is a model call through the gateway with the SKILL.md as the system
prompt, the operation's `prompt` after it and the caller's `input` as the user turn. What is
not done, on purpose: the files of a zip skill (scripts) are never executed: the hub has no
sandbox to run a stranger's code in, and openloomi's desktop agent runs them on the person's
own machine, not on a server.
"""

from __future__ import annotations

import contextlib
import re
from typing import Any, AsyncIterator, Literal

import orjson
from pydantic import AliasChoices, Field, model_validator
from starlette.requests import Request
from starlette.routing import Route

from ai import grounding, wire
from ai.gateway import ChatStream, gateway_of, ready_gateway
from ai.search import Scope
from ai.types import AIError, ChatRequest
from api.auth import Principal, hub_of
from api.endpoint import endpoint
from api.errors import ApiError, bad_request
from api.schemas import Body
from store import skills as skill_store

AGENT = "loomi"
DEFAULT_OPERATION = "run"
OPERATION_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
MAX_OPERATIONS = 50
MAX_INPUT = 100_000
MAX_SKILL_PROMPT = 24_000  # characters of one SKILL.md the model sees
MAX_AGENT_SKILLS_CHARS = 48_000  # all skills' instructions together, for the agent
AGENT_PROMPT = (
    "You are Loomi's agent. The user's enabled skills follow, each as its SKILL.md. When the "
    "request matches a skill, follow that skill's instructions and say which one you used."
)


def operations_of(row: dict[str, Any]) -> list[dict[str, Any]]:
    """The operations a skill's front matter declares (malformed entries are left out), or `run`."""
    declared = (row.get("meta") or {}).get("operations")
    items: list[tuple[Any, Any]] = []
    if isinstance(declared, list):
        items = [(d.get("name"), d) for d in declared if isinstance(d, dict)]
    elif isinstance(declared, dict):
        items = list(declared.items())
    found: dict[str, dict[str, Any]] = {}
    for name, spec in items[:MAX_OPERATIONS]:
        if not isinstance(name, str) or not OPERATION_NAME.match(name) or name in found:
            continue
        if isinstance(spec, str):
            spec = {"description": spec}
        if not isinstance(spec, dict):
            continue
        prompt = spec.get("prompt", spec.get("instructions"))
        description = spec.get("description")
        found[name] = {"name": name, "description": description if isinstance(description, str) else None,
                       "prompt": prompt if isinstance(prompt, str) else None}
    if not found:
        return [{"name": DEFAULT_OPERATION, "description": row["description"], "prompt": None}]
    return list(found.values())


def native_skill_json(row: dict[str, Any]) -> dict[str, Any]:
    return {"id": row["id"], "name": row["name"], "description": row["description"], "version": row["version"],
            "operations": [{"name": op["name"], "description": op["description"]} for op in operations_of(row)]}


def _instructions(row: dict[str, Any], limit: int = MAX_SKILL_PROMPT) -> str:
    return row["content"][:limit]


class RunBody(Body):
    skill_id: str | None = Field(default=None, max_length=40, validation_alias=AliasChoices("skillId", "id"))
    skill: str | None = Field(default=None, max_length=100, description="the skill's name, instead of skillId")
    operation: str = Field(default=DEFAULT_OPERATION, min_length=1, max_length=64)
    input: str | dict[str, Any] | list[Any] | None = None
    model: str | None = Field(default=None, max_length=200)

    @model_validator(mode="after")
    def _which(self) -> "RunBody":
        if not (self.skill_id or self.skill):
            raise ValueError("give skillId or skill (its name)")
        return self


class Turn(Body):
    role: Literal["user", "assistant"]
    content: str = Field(max_length=MAX_INPUT)


class AgentBody(Body):
    prompt: str = Field(min_length=1, max_length=MAX_INPUT)
    conversation: list[Turn] = Field(default_factory=list, max_length=200)
    skill_ids: list[str] | None = Field(default=None, alias="skillIds", max_length=200)
    model: str | None = Field(default=None, max_length=200)
    stream: bool = True
    grounded: bool = True  # the person's own messages as numbered sources, as /api/ai/chat does
    sources_limit: int = Field(default=8, alias="sourcesLimit", ge=1, le=30)

    @model_validator(mode="after")
    def _prompt(self) -> "AgentBody":
        if not self.prompt.strip():
            raise ValueError("prompt must be a non-empty string")
        return self


async def _enabled(request: Request, user: Principal) -> list[dict[str, Any]]:
    async with hub_of(request).engine.connect() as conn:
        return [r for r in await skill_store.list_skills(conn, user.id) if r["enabled"]]


@endpoint()
async def providers(request: Request, user: Principal):
    """The agent providers (openloomi's shape): `{agents, defaultAgent}`."""
    status = (await ready_gateway(hub_of(request))).status()
    agent = {"type": AGENT, "name": "Loomi", "description": "The hub's agent: your enabled skills on the configured model",
             "available": bool(status["chat"]), "model": status["defaultModel"]}
    return {"agents": [agent], "defaultAgent": AGENT}


@endpoint()
async def list_skills(request: Request, user: Principal):
    """The enabled skills and their declared operations: `{skills, total}`."""
    rows = await _enabled(request, user)
    return {"skills": [native_skill_json(r) for r in rows], "total": len(rows)}


async def _skill_for(request: Request, user: Principal, body: RunBody) -> dict[str, Any]:
    async with hub_of(request).engine.connect() as conn:
        if body.skill_id:
            row = await skill_store.get(conn, user.id, body.skill_id)
        else:
            row = next((r for r in await skill_store.list_skills(conn, user.id) if r["name"] == (body.skill or "").strip()), None)
    if row is None:
        raise ApiError(404, "Skill not found", "skill_not_found")
    if not row["enabled"]:
        raise ApiError(409, "The skill is disabled", "skill_disabled", "enable it with POST /api/workspace/skills/toggle")
    return row


def _input_text(value: str | dict[str, Any] | list[Any] | None) -> str:
    text = value if isinstance(value, str) else ("" if value is None else orjson.dumps(value).decode())
    if len(text) > MAX_INPUT:
        raise bad_request("Invalid input", "invalid_input", f"input: at most {MAX_INPUT} characters")
    return text


@wire.api_errors
@endpoint(body=RunBody)
async def run_skill(request: Request, user: Principal, body: RunBody):
    """Run one of an enabled skill's operations on `input` through the model:
    `{success, skill, operation, output, model, usage}`."""
    row = await _skill_for(request, user, body)
    ops = {op["name"]: op for op in operations_of(row)}
    op = ops.get(body.operation)
    if op is None:
        raise bad_request("Unknown operation", "unknown_operation", f"{row['name']} declares: {', '.join(ops)}")
    text = _input_text(body.input)
    gateway = await ready_gateway(hub_of(request))
    gateway.targets("chat", body.model or None)
    messages = [{"role": "system", "content": _instructions(row)}]
    if op["prompt"]:
        messages.append({"role": "system", "content": f"Operation `{op['name']}`: {op['prompt']}"})
    messages.append({"role": "user", "content": text if text.strip() else f"Run the `{op['name']}` operation."})
    result = await wire.unless_disconnected(
        request, gateway.chat(user.id, ChatRequest(body.model or "", messages), f"skill {row['name']}:{op['name']}"))
    choice = result.choices[0] if result.choices else {}
    output = str((choice.get("message") or {}).get("content") or "")
    return {"success": True, "skill": native_skill_json(row), "operation": op["name"], "output": output,
            "model": result.model, "usage": result.usage.openai()}


def agent_messages(skills: list[dict[str, Any]], body: AgentBody) -> list[dict[str, Any]]:
    """The agent's prompt: its role, each skill's SKILL.md (within MAX_AGENT_SKILLS_CHARS), the
    conversation so far and the new request."""
    parts, used = [AGENT_PROMPT], 0
    for row in skills:
        block = f"\n\n## Skill: {row['name']}\n{_instructions(row)}"
        if used + len(block) > MAX_AGENT_SKILLS_CHARS:
            break
        parts.append(block)
        used += len(block)
    history = [{"role": t.role, "content": t.content} for t in body.conversation]
    return [{"role": "system", "content": "".join(parts)}, *history, {"role": "user", "content": body.prompt}]


async def _agent_events(stream: ChatStream, skills: list[str], sources: list[dict[str, Any]]) -> AsyncIterator[bytes]:
    """openloomi's agent stream: `init` (model, skills, sources), `{type: text}` pieces, then
    `{type: result}` with the whole answer and usage; a failure is `{type: error}`."""
    texts: list[str] = []
    yield wire.sse({"type": "init", "agent": AGENT, "model": stream.target.model, "skills": skills, "sources": sources})
    try:
        async with contextlib.aclosing(stream.__aiter__()) as chunks:
            async for chunk in chunks:
                piece = chunk.text()
                if piece:
                    texts.append(piece)
                    yield wire.sse({"type": "text", "content": piece})
    except AIError as err:
        yield wire.sse({"type": "error", "message": err.message, "code": err.code})
        return
    usage = stream.usage.openai() if stream.usage else None
    yield wire.sse({"type": "result", "content": "".join(texts), "usage": usage})
    yield wire.DONE


@wire.api_errors
@endpoint(body=AgentBody)
async def agent(request: Request, user: Principal, body: AgentBody):
    """Ask the agent (`{prompt, conversation?, skillIds?}`) with the enabled skills (or those named)
    in front of the model; server-sent events, or `{content, skills, usage}` with `stream: false`."""
    skills = await _enabled(request, user)
    if body.skill_ids is not None:
        wanted = set(body.skill_ids)
        unknown = wanted - {r["id"] for r in skills}
        if unknown:
            raise ApiError(404, "Skill not found", "skill_not_found", f"not an enabled skill of yours: {', '.join(sorted(unknown)[:5])}")
        skills = [r for r in skills if r["id"] in wanted]
    gateway = await ready_gateway(hub_of(request))
    gateway.targets("chat", body.model or None)
    messages = agent_messages(skills, body)
    sources: list[dict[str, Any]] = []
    if body.grounded:
        sources = await grounding.ground(hub_of(request).engine, user.id, messages, Scope(), body.sources_limit)
        messages = grounding.with_context(messages, sources)
    chat = ChatRequest(body.model or "", messages, body.stream)
    names = [r["name"] for r in skills]
    if body.stream:
        stream = await wire.unless_disconnected(request, gateway_of(hub_of(request)).open_chat_stream(user.id, chat, "native agent"))
        return wire.event_stream(_agent_events(stream, names, sources))
    result = await wire.unless_disconnected(request, gateway.chat(user.id, chat, "native agent"))
    choice = result.choices[0] if result.choices else {}
    return {"content": str((choice.get("message") or {}).get("content") or ""), "skills": names, "sources": sources,
            "model": result.model, "usage": result.usage.openai()}


routes = [
    Route("/api/native/providers", providers, methods=["GET"]),
    Route("/api/native/skills", list_skills, methods=["GET"]),
    Route("/api/native/skills/run", run_skill, methods=["POST"]),
    Route("/api/native/agent", agent, methods=["POST"]),
]
