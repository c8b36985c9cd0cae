"""The OpenAPI 3.1 document, generated from the operation table and its pydantic models."""

from __future__ import annotations

import re
from collections.abc import Iterable
from http import HTTPStatus
from typing import Any, Final

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from hub import __version__
from hub.web.routing import BODY_TIMEOUT_STATUS, BODY_TOO_LARGE_STATUS, Operation
from hub.web.schemas import ErrorBody

REF = "#/components/schemas/{model}"
AUTH_ERRORS = (401,)
# what a 429 (a command beyond the device's rate) carries: when to send the next
RETRY_AFTER: Final = {
    "Retry-After": {
        "description": "whole seconds until the device takes the next command",
        "schema": {"type": "integer", "minimum": 1},
    }
}
# what any request with a body may answer: not JSON, not all there in time, too long
BODY_ERRORS = (400, BODY_TIMEOUT_STATUS, BODY_TOO_LARGE_STATUS)


def _ref(model: type[BaseModel]) -> dict[str, str]:
    return {"$ref": REF.format(model=model.__name__)}


def _json_content(schema: dict[str, Any]) -> dict[str, Any]:
    return {"application/json": {"schema": schema}}


def _query_parameters(model: type[BaseModel]) -> list[dict[str, Any]]:
    schema = model.model_json_schema()
    required = set(schema.get("required", []))
    return [
        {
            "name": name,
            "in": "query",
            "required": name in required,
            "schema": {key: value for key, value in prop.items() if key not in ("title", "description")},
            **({"description": prop["description"]} if "description" in prop else {}),
        }
        for name, prop in schema["properties"].items()
    ]


def _path_schema(op: Operation, name: str, numeric: set[str]) -> dict[str, Any]:
    if name not in numeric:
        return {"type": "string"}
    least, greatest = (op.path_ranges or {}).get(name, (0, None))
    return {"type": "integer", "minimum": least, **({} if greatest is None else {"maximum": greatest})}


def _operation(op: Operation, open_reads: bool) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "summary": op.summary,
        "tags": [op.tag],
        "operationId": op.handler.__name__,
    }
    numeric = set(re.findall(r"{(\w+):\[0-9\]\+}", op.path))
    parameters = [
        {
            "name": name,
            "in": "path",
            "required": True,
            "description": text,
            "schema": _path_schema(op, name, numeric),
        }
        for name, text in (op.path_params or {}).items()
    ]
    if op.query is not None:
        parameters += _query_parameters(op.query)
    if parameters:
        spec["parameters"] = parameters
    if op.body is not None:
        spec["requestBody"] = {"required": not op.body_optional, "content": _json_content(_ref(op.body))}
    success: dict[str, Any] = {"description": HTTPStatus(op.status).phrase}
    if op.response is not None:
        success["content"] = _json_content(_ref(op.response))
    responses: dict[str, Any] = {str(op.status): success}
    if op.also is not None:
        responses[str(op.also)] = {**success, "description": HTTPStatus(op.also).phrase}
    needs_token = op.write or not open_reads
    body_errors = set(BODY_ERRORS) if op.body is not None else set()
    for status in sorted(set(op.errors) | body_errors | (set(AUTH_ERRORS) if needs_token else set())):
        responses[str(status)] = {"description": HTTPStatus(status).phrase, "content": _json_content(_ref(ErrorBody))}
        if status == HTTPStatus.TOO_MANY_REQUESTS:
            responses[str(status)]["headers"] = RETRY_AFTER
    spec["responses"] = responses
    if needs_token:
        spec["security"] = [{"bearer": []}]
    return spec


def openapi_path(route: str) -> str:
    """aiohttp's ``{name:regex}`` placeholders as OpenAPI's plain ``{name}``."""
    return re.sub(r"{(\w+):[^}]+}", r"{\1}", route)


def _models(operations: Iterable[Operation]) -> list[type[BaseModel]]:
    models: dict[str, type[BaseModel]] = {"ErrorBody": ErrorBody}
    for op in operations:
        for model in (op.body, op.response):
            if model is not None:
                models[model.__name__] = model
    return list(models.values())


def build_document(operations: Iterable[Operation], *, open_reads: bool = True) -> dict[str, Any]:
    """The document of ``operations``; with ``open_reads`` false every operation needs the token (http.open_reads)."""
    operations = list(operations)
    _, schema = models_json_schema([(model, "validation") for model in _models(operations)], ref_template=REF)
    paths: dict[str, dict[str, Any]] = {}
    for op in operations:
        paths.setdefault(openapi_path(op.path), {})[op.method.lower()] = _operation(op, open_reads)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "wmhub REST API",
            "version": __version__,
            "description": "Watch and control wireless microphone receivers. See docs/api.md.",
        },
        "paths": paths,
        "components": {
            "schemas": schema.get("$defs", {}),
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
    }
