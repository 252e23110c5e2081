"""`/openapi.json`, generated from the same pydantic models `@endpoint` validates with."""

from __future__ import annotations

import re
from typing import Any

from starlette.requests import Request
from starlette.routing import BaseRoute, Route

from api.responses import json

ERROR_SCHEMA = {
    "type": "object",
    "required": ["error"],
    "properties": {"error": {"type": "string"}, "code": {"type": "string"}, "cause": {"type": "string"}},
}
# What /api/ai/v1/* answers instead (OpenAI's shape, ai/wire.py): the official SDKs read it.
OPENAI_ERROR_SCHEMA = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["message", "type", "code"],
            "properties": {
                "message": {"type": "string"},
                "type": {"type": "string"},
                "code": {"type": ["string", "null"]},
                "param": {"type": ["string", "null"]},
            },
        },
    },
}


def _schema(model: Any, components: dict[str, Any]) -> dict[str, Any]:
    schema = model.model_json_schema(ref_template="#/components/schemas/{model}", by_alias=True)
    for name, sub in schema.pop("$defs", {}).items():
        components[name] = sub
    components[model.__name__] = schema
    return {"$ref": f"#/components/schemas/{model.__name__}"}


def build(routes: list[BaseRoute], title: str = "openloomi-hub", version: str = "0.1.0") -> dict[str, Any]:
    components: dict[str, Any] = {"Error": ERROR_SCHEMA, "OpenAIError": OPENAI_ERROR_SCHEMA}
    paths: dict[str, Any] = {}
    for route in routes:
        if not isinstance(route, Route):
            continue
        spec = getattr(route.endpoint, "__loomi_spec__", None)
        path = re.sub(r"\{(\w+)(:\w+)?\}", r"{\1}", route.path)
        error_ref = "#/components/schemas/" + ("OpenAIError" if path.startswith("/api/ai/v1/") else "Error")
        for method in sorted((route.methods or set()) - {"HEAD"}):
            op: dict[str, Any] = {
                "summary": spec.summary if spec else (route.endpoint.__doc__ or route.name or "").strip(),
                "responses": {
                    "200": {"description": "OK"},
                    "4XX": {"description": "Error", "content": {"application/json": {"schema": {"$ref": error_ref}}}},
                },
            }
            params = [{"name": p, "in": "path", "required": True, "schema": {"type": "string"}} for p in route.param_convertors]
            if spec and spec.query is not None:
                for name, field in spec.query.model_json_schema(by_alias=True).get("properties", {}).items():
                    params.append({"name": name, "in": "query", "schema": field})
            if params:
                op["parameters"] = params
            if spec and spec.body is not None:
                op["requestBody"] = {"required": True, "content": {"application/json": {"schema": _schema(spec.body, components)}}}
            if spec and spec.response is not None:
                op["responses"]["200"]["content"] = {"application/json": {"schema": _schema(spec.response, components)}}
            if spec and spec.auth:
                op["security"] = [{"bearer": []}, {"cookie": []}]
            paths.setdefault(path, {})[method.lower()] = op
    return {
        "openapi": "3.1.0",
        "info": {"title": title, "version": version},
        "paths": paths,
        "components": {
            "schemas": components,
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"},
                "cookie": {"type": "apiKey", "in": "cookie", "name": "loomi_session"},
            },
        },
    }


async def openapi(request: Request):
    return json(build(request.app.routes))
