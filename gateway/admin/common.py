"""Helpers every admin handler module uses, and the bounds on every integer the admin API accepts.

Every integer that reaches a store is bounded here (and in the models), so an out-of-range number is a 400
problem document naming the bound instead of an overflow deep in SQLite, Redis or orjson.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any

from aiohttp import web

from gateway.contracts.validation import CompiledContract
from gateway.control.state import STATE, GatewayState
from gateway.control.versioning import MAX_VERSION, DocumentNotFound
from gateway.errors import AdminError

INT64 = (-(2**63), 2**63 - 1)
"""Integers a JSON value may hold anywhere in a stored document or payload (orjson, SQLite and Redis agree)."""
MAX_LIMIT = 1000
"""Largest page a listing returns (``?limit``)."""
MAX_WINDOW_SECONDS = 366 * 24 * 3600
"""Longest look-back of ``/stats/failures`` (``?window``): the audit trail keeps less than that anyway."""
_DIGITS = re.compile(r"[0-9]{1,19}")
_FLAGS = {"true": True, "false": False}

VERSION_SCHEMA: Mapping[str, Any] = {"type": "integer", "minimum": 1, "maximum": MAX_VERSION}


def state_of(request: web.Request) -> GatewayState:
    return request.app[STATE]


def not_found(what: str) -> AdminError:
    return AdminError(404, f"{what} not found.", kind="not-found", title="Not found")


async def compiled_contract(request: web.Request, contract_id: str, version: int | None) -> CompiledContract:
    """Version ``version`` of a contract (the one in force when ``None``), compiled; 404 when there is none."""
    try:
        return await state_of(request).contracts.compiled(contract_id, version)
    except DocumentNotFound as exc:
        raise not_found(f"Contract {contract_id!r}" + (f" version {version}" if version else "")) from exc


def conflict(detail: str, errors: list[dict[str, str]] | None = None) -> AdminError:
    return AdminError(409, detail, kind="conflict", title="Conflict", errors=errors or [])


def _bounded(text: str, what: str, low: int, high: int) -> int:
    """``text`` as an integer in ``[low, high]``; only ASCII digits count (no sign, spaces, ``_`` or other
    scripts' digits, which ``int()`` would take)."""
    if not _DIGITS.fullmatch(text) or not low <= int(text) <= high:
        raise AdminError(400, f"{what} must be an integer from {low} to {high}")
    return int(text)


def int_query(request: web.Request, name: str, default: int, maximum: int) -> int:
    """Query parameter ``name`` in ``[1, maximum]``; ``default`` when absent."""
    if name not in request.query:
        return default
    return _bounded(request.query[name], f"query parameter {name!r}", 1, maximum)


def int_param(request: web.Request, name: str, maximum: int = MAX_VERSION) -> int:
    """Path parameter ``name`` in ``[1, maximum]``."""
    return _bounded(request.match_info[name], name, 1, maximum)


def bool_query(request: web.Request, name: str, default: bool) -> bool:
    """Query parameter ``name`` spelled ``true`` or ``false`` (as OpenAPI serialises a boolean)."""
    value = request.query.get(name)
    if value is None:
        return default
    if value.lower() not in _FLAGS:
        raise AdminError(400, f"query parameter {name!r} must be true or false")
    return _FLAGS[value.lower()]


def enum_query(request: web.Request, name: str, allowed: frozenset[str]) -> str | None:
    """Query parameter ``name`` if given, refused unless it is one of ``allowed``."""
    value = request.query.get(name)
    if value is not None and value not in allowed:
        raise AdminError(400, f"query parameter {name!r} must be one of {', '.join(sorted(allowed))}")
    return value


def _text_problem(text: str) -> str | None:
    try:
        text.encode()
    except UnicodeEncodeError:
        return "text must be valid Unicode (a lone surrogate cannot be stored)"
    return None


def json_problem(value: Any, pointer: str = "") -> tuple[str, str] | None:
    """``(pointer, message)`` for the first part of ``value`` that is not plain JSON a store can keep
    (string keys; valid Unicode; integers within 64 bits; finite numbers; no YAML dates, sets or binary),
    else ``None``."""
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                return pointer, f"object keys must be strings, not {type(key).__name__}"
            if problem := _text_problem(key):
                return pointer, problem
            found = json_problem(item, f"{pointer}/{key.replace('~', '~0').replace('/', '~1')}")
            if found:
                return found
        return None
    if isinstance(value, list):
        return next((f for i, item in enumerate(value) if (f := json_problem(item, f"{pointer}/{i}"))), None)
    if isinstance(value, str):
        return None if (problem := _text_problem(value)) is None else (pointer, problem)
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int):
        return None if INT64[0] <= value <= INT64[1] else (pointer, "integer outside the 64-bit range")
    if isinstance(value, float):
        return None if math.isfinite(value) else (pointer, "numbers must be finite")
    return pointer, f"{type(value).__name__} is not a JSON value"
