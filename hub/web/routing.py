"""The operation table behind the REST API: one entry per endpoint, used for routing, auth and OpenAPI.

Handlers raise :class:`ApiError` for every expected failure; the server turns it into the JSON error
body ``{"error", "code", "details"}`` with the operation's status. Request bodies and query strings are
validated by the pydantic models named in the operation, so the OpenAPI document and the checks agree.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final, TypeVar

import orjson
from aiohttp import web
from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from hub.redact import redact

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
# A client that starts a request and then trickles or stalls its (at most 64 KiB) body does not hold a
# handler open for longer than this.
BODY_TIMEOUT_S = 10.0
BODY_TIMEOUT_STATUS = 408
# the web server's client_max_size: a longer body answers 413 too_large
MAX_BODY_BYTES: Final = 64 * 1024
BODY_TOO_LARGE_STATUS: Final = 413
ModelT = TypeVar("ModelT", bound=BaseModel)


class ApiError(Exception):
    def __init__(
        self, status: int, code: str, error: str, details: Any = None, headers: Mapping[str, str] | None = None
    ) -> None:
        super().__init__(error)
        self.status = status
        self.code = code
        self.error = error
        self.details = details
        self.headers = headers or {}


def not_found(what: str, hint: str | None = None) -> ApiError:
    """``<what> not found``, then the hint in brackets: ``channel 'x' not found (ids look like …)``."""
    return ApiError(404, "not_found", f"{what} not found ({hint})" if hint else f"{what} not found")


SQLITE_INTEGER_MAX: Final = 2**63 - 1


def path_number(request: web.Request, name: str) -> int:
    """The numeric id ``name`` of the path, matched by ``[0-9]+`` (``\\d`` would take any script's digits, which
    int() reads): one no row can have answers 404 before int() (4,300 digits at most) or SQLite (64 bits)
    would be asked to read it."""
    text = request.match_info[name]
    digits = text.lstrip("0")
    if len(digits) > len(str(SQLITE_INTEGER_MAX)) or int(text) > SQLITE_INTEGER_MAX:
        shown = text if len(text) <= 30 else f"{text[:30]}…"
        raise ApiError(404, "not_found", f"no {name.removesuffix('_id')} {shown}")
    return int(text)


@dataclass(frozen=True)
class Operation:
    method: str
    path: str
    handler: Handler
    summary: str
    tag: str
    write: bool = False
    query: type[BaseModel] | None = None
    body: type[BaseModel] | None = None
    response: type[BaseModel] | None = None
    status: int = 200
    also: int | None = None  # a second success status with the same body (e.g. 200 "already there")
    errors: tuple[int, ...] = ()
    path_params: dict[str, str] | None = None  # name -> description
    path_ranges: dict[str, tuple[int, int]] | None = None  # numeric path parameter -> (least, greatest) taken
    body_optional: bool = False  # the body may be left out (every field's default)


def dumps(data: Any) -> str:
    try:
        return orjson.dumps(data).decode()
    except TypeError:
        # orjson refuses integers beyond 64 bits, which a client can put into an error's details; written as
        # orjson writes (compact, UTF-8), so such an answer looks like every other
        return json.dumps(data, default=str, separators=(",", ":"), ensure_ascii=False)


def json_response(data: Any, status: int = 200) -> web.Response:
    if isinstance(data, BaseModel):
        data = data.model_dump(mode="json")
    return web.json_response(data, status=status, dumps=dumps)


# the codes of aiohttp's own errors (no route, wrong method, body too large, a request its parser refuses)
HTTP_ERROR_CODES: Final = {400: "bad_request", 404: "not_found", 405: "method_not_allowed", 413: "too_large"}


def error_response(status: int, code: str, error: str, details: Any = None) -> web.Response:
    return json_response({"error": redact(error), "code": code, "details": details}, status)


# A refused body's ``details`` lists this many of its problems: a 64 KiB body of 6,500 unknown keys is not
# answered with seven times its size.
PROBLEMS_LISTED: Final = 20


def _invalid(code: str, what: str, exc: ValidationError) -> ApiError:
    """422 for ``what`` (the request body, the query string), the first PROBLEMS_LISTED problems in ``details``."""
    problems = exc.errors(include_url=False)
    counted = (
        f" ({len(problems)} problems, the first {PROBLEMS_LISTED} in details)"
        if len(problems) > PROBLEMS_LISTED
        else ""
    )
    details = [_validation_detail(item) for item in problems[:PROBLEMS_LISTED]]
    return ApiError(422, code, f"the {what} is not valid{counted}", details)


def _validation_detail(item: ErrorDetails) -> dict[str, Any]:
    """One error as the API shows it (no input, no context). The length of an optional name (``Line | None``)
    is checked after the name's own validators, where pydantic counts it as a list would ("at most 64 items"):
    said of text as for every other name."""
    message, kind = item["msg"], item["type"]
    if kind in ("too_long", "too_short") and isinstance(item.get("input"), str):
        limit = item.get("ctx", {}).get("max_length" if kind == "too_long" else "min_length")
        bound = "at most" if kind == "too_long" else "at least"
        message, kind = f"String should have {bound} {limit} character{'' if limit == 1 else 's'}", f"string_{kind}"
    return {"loc": list(item["loc"]), "msg": message, "type": kind}


def _whole_numbers_as_integers(raw: bytes) -> bytes:
    """``raw`` with every number of no fraction written as an integer: ``15.0`` is an integer in JSON Schema
    (what a JSON writer may make of 15), and the strict check below takes only ``15`` for an integer field.
    A float field takes 15 as well. A body that is no JSON is left for the check to refuse."""
    rewritten = False

    def number(text: str) -> float | int:
        nonlocal rewritten
        value = float(text)
        if value.is_integer():  # never for inf or nan
            rewritten = True
            return int(value)
        return value

    try:
        document = json.loads(raw, parse_float=number)
        return json.dumps(document, allow_nan=False).encode() if rewritten else raw
    # no JSON, a number beyond a float written alongside, or nesting deeper than Python's parser goes (its
    # stack, not a rule): the check below says what is wrong (it reads 200 levels at most)
    except (ValueError, RecursionError):
        return raw


def parse_query(request: web.Request, model: type[ModelT]) -> ModelT:
    try:
        return model.model_validate(dict(request.query))
    except ValidationError as exc:
        raise _invalid("invalid_query", "query string", exc) from None


async def parse_body(request: web.Request, model: type[ModelT], *, optional: bool = False) -> ModelT:
    """Validate a JSON body strictly: ``0`` is not ``false`` and ``"5"`` is not ``5``. An ``optional`` body
    may be left out, which means every field's default."""
    try:
        async with asyncio.timeout(BODY_TIMEOUT_S):
            raw = await request.read()
    except TimeoutError:
        raise ApiError(
            BODY_TIMEOUT_STATUS, "body_timeout", f"the request body did not arrive within {BODY_TIMEOUT_S:g} s"
        ) from None
    if optional and not raw.strip():
        raw = b"{}"
    try:
        raw = _whole_numbers_as_integers(raw)
        return model.model_validate_json(raw or b"null", strict=True)
    except ValidationError as exc:
        if any(error["type"] == "json_invalid" for error in exc.errors()):
            raise ApiError(400, "bad_json", "the request body is not JSON") from None
        raise _invalid("invalid_body", "request body", exc) from None
