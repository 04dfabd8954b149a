"""Requests to throw at an agent, derived from its contract's request schema.

Three kinds, each a JSON value (a REST body, or the ``params`` of a JSON-RPC call):

- **generated**: :func:`valid_values`, hypothesis-jsonschema's strategy for the schema, kept only when the
  gateway itself would accept it (the caller passes that check in), so "valid" means what the data plane means;
- **boundary**: :func:`boundary_cases`, the minimal valid value with one member set to an edge of its schema
  (empty and longest strings and arrays, non-ASCII text, 64-bit and float extremes, optional members present).
  Random generation reaches these only by luck; listing them makes them certain;
- **near-valid**: :func:`near_valid_cases`, the minimal valid value with exactly one mutation that breaks it (a
  required member missing, a wrong type, an extra member, a value out of range). An agent should refuse them.

Every candidate is checked with the caller's ``accepts`` predicate (the contract's compiled validator), so a
boundary that the schema excludes is never sent as valid and a mutation the schema tolerates is never sent as
invalid.
"""

from __future__ import annotations

import copy
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import orjson
from hypothesis import HealthCheck, Phase, find, settings
from hypothesis import strategies as st
from hypothesis.errors import NoSuchExample, Unsatisfiable
from hypothesis.internal.conjecture import utils as conjecture_utils
from hypothesis_jsonschema import _from_schema, from_schema

from gateway.contracts.document import json_pointer

Accepts = Callable[[Any], bool]
"""Whether the gateway's validator finds a value valid."""
Path = tuple[str | int, ...]

MAX_DEPTH = 3
"""How deep boundary and near-valid cases reach into nested objects: deeper members are covered by generation."""
LONGEST = 4096
"""Longest string or array a boundary case builds from ``maxLength``/``maxItems`` (a bigger bound stays untried)."""
NON_ASCII = ("é", "日本語", "\U0001d11e", "\u0000")
"""One Latin-1 letter, CJK, a character outside the BMP (two UTF-16 units), NUL."""
INTEGERS = (0, -1, 2**63 - 1, -(2**63))
"""The 64-bit extremes: larger integers are not JSON the gateway accepts (orjson refuses them)."""
NUMBERS = (0.5, -0.0, 1.7976931348623157e308, 5e-324)
EXTRA_MEMBER = "fuzz_extra_member"


class _Many:
    """The collection-size helper hypothesis-jsonschema 0.23 calls as ``cu.many(...).more()``.

    Hypothesis 6.150+ replaced ``more()`` with a context-manager iterator, so every object schema with optional
    members crashes there with ``AttributeError: 'many' object has no attribute 'more'``. This draws the same
    "one more?" booleans (shrinking toward fewer members) through the public choice API.
    """

    def __init__(self, data: Any, min_size: int, max_size: float, average_size: float) -> None:
        self._data = data
        self._min, self._max = min_size, max_size
        self._p = conjecture_utils._calc_p_continue(average_size - min_size, max_size - min_size)
        self._count = 0

    def more(self) -> bool:
        forced = True if self._count < self._min else False if self._count >= self._max else None
        if self._min == self._max:
            go = self._count < self._min
        else:
            go = bool(self._data.draw_boolean(self._p, forced=forced))
        self._count += go
        return go

    def reject(self, why: str | None = None) -> None:
        self._count -= 1


class _CompatUtils:
    """What hypothesis-jsonschema reads from ``hypothesis.internal.conjecture.utils``, with :class:`_Many`."""

    many = _Many


if not hasattr(conjecture_utils.many, "more"):
    _from_schema.cu = _CompatUtils  # type: ignore[attr-defined,assignment]


def encodable(value: Any) -> bool:
    """Whether ``value`` is JSON the gateway can read (orjson refuses integers beyond 64 bits)."""
    try:
        orjson.dumps(value)
    except TypeError:
        return False
    return True


def valid_values(schema: Any, accepts: Accepts) -> st.SearchStrategy[Any]:
    """Generated values the gateway accepts; raises ``ValueError`` when the schema cannot be generated from
    (e.g. a ``$ref`` to a shared schema of another document)."""
    try:
        strategy = from_schema(schema)
    except Exception as exc:  # hypothesis-jsonschema raises assorted errors (InvalidArgument, RefResolutionError)
        raise ValueError(f"cannot generate requests from the request schema: {exc}") from exc
    return strategy.filter(lambda value: encodable(value) and accepts(value))


def search_settings(max_examples: int) -> settings:
    """Deterministic given the caller's ``random``, nothing stored between runs, no health checks (an agent's
    latency is not a slow test), generate then shrink."""
    return settings(
        database=None, max_examples=max_examples, deadline=None, derandomize=False,
        suppress_health_check=list(HealthCheck), phases=(Phase.generate, Phase.shrink),
    )  # fmt: skip


def minimal(strategy: st.SearchStrategy[Any], seed: int) -> Any:
    """The simplest value ``strategy`` draws, as hypothesis orders them (empty, zero, optional members absent);
    raises ``ValueError`` when it draws none."""
    try:
        return find(strategy, lambda _: True, settings=search_settings(50), random=random.Random(seed))
    except (NoSuchExample, Unsatisfiable) as exc:
        raise ValueError("the request schema admits no value the gateway accepts") from exc


@dataclass(frozen=True, slots=True)
class Mutant:
    """A request derived from the minimal valid one by one change; ``what`` says which, for the report."""

    value: Any
    what: str


def _types(schema: Any) -> tuple[str, ...]:
    declared = schema.get("type") if isinstance(schema, dict) else None
    if isinstance(declared, str):
        return (declared,)
    return tuple(declared) if isinstance(declared, list) else ()


def _members(schema: Any, value: Any, path: Path = ()) -> Iterator[tuple[Path, Any, Any]]:
    """``(path, schema, value or None)`` of each declared object member down to :data:`MAX_DEPTH`."""
    if not isinstance(schema, dict) or not isinstance(value, dict) or len(path) >= MAX_DEPTH:
        return
    for name, sub in (schema.get("properties") or {}).items():
        yield (*path, name), sub, value.get(name)
        if name in value:
            yield from _members(sub, value[name], (*path, name))


def _set(base: Any, path: Path, value: Any) -> Any:
    copied = copy.deepcopy(base)
    parent = copied
    for key in path[:-1]:
        parent = parent[key]
    parent[path[-1]] = value
    return copied


def _edges(schema: Any, member_minimal: Any) -> Iterator[Any]:
    """Edge values of one member's schema; the caller keeps those the whole schema accepts."""
    if not isinstance(schema, dict):
        return
    yield member_minimal
    yield from schema.get("enum", ())
    types = _types(schema)
    if "string" in types:
        low, high = schema.get("minLength", 0), schema.get("maxLength")
        yield ""
        yield "a" * low
        if high is not None and high <= LONGEST:
            yield "a" * high
        for text in NON_ASCII:
            yield text * max(1, low)
    if "array" in types:
        item = member_minimal[0] if isinstance(member_minimal, list) and member_minimal else None
        low, high = schema.get("minItems", 0), schema.get("maxItems")
        yield []
        yield [item] * max(1, low)
        if high is not None and high <= LONGEST:
            yield [item] * high
    if "integer" in types or "number" in types:
        yield from INTEGERS
        yield from (schema[k] for k in ("minimum", "maximum") if k in schema)
        yield from (schema[k] + 1 for k in ("exclusiveMinimum",) if k in schema)
        yield from (schema[k] - 1 for k in ("exclusiveMaximum",) if k in schema)
    if "number" in types:
        yield from NUMBERS
    if "boolean" in types:
        yield from (False, True)


def boundary_cases(schema: Any, base: Any, member_minimal: Callable[[Any], Any], accepts: Accepts) -> list[Mutant]:
    """The minimal valid ``base`` with one member at an edge of its schema (an absent optional member is added),
    each accepted by the gateway, without duplicates. ``member_minimal(schema)`` is a member's simplest value."""
    found: dict[bytes, Mutant] = {}
    for path, sub, _ in _members(schema, base):
        simplest = member_minimal(sub)
        for edge in _edges(sub, simplest):
            candidate = _set(base, path, edge)
            key = orjson.dumps(candidate, option=orjson.OPT_SORT_KEYS) if encodable(candidate) else b""
            if key and key not in found and candidate != base and accepts(candidate):
                found[key] = Mutant(candidate, f"{json_pointer(path)} = {_short(edge)}")
    return list(found.values())


def _short(value: Any) -> str:
    text = orjson.dumps(value).decode()
    return text if len(text) <= 40 else f"{text[:30]}… ({len(text)} chars)"


_WRONG_TYPED: tuple[tuple[str, Any], ...] = (
    ("string", "fuzz"), ("integer", 0), ("boolean", True), ("null", None), ("array", []), ("object", {}),
)  # fmt: skip


def _out_of_range(schema: dict[str, Any]) -> Iterator[tuple[str, Any]]:
    bounds = (
        ("minimum", -1), ("maximum", 1), ("exclusiveMinimum", 0), ("exclusiveMaximum", 0),
    )  # fmt: skip
    for keyword, step in bounds:
        if isinstance(schema.get(keyword), int | float):
            yield keyword, schema[keyword] + step
    if schema.get("minLength", 0) > 0:
        yield "minLength", "a" * (schema["minLength"] - 1)
    if isinstance(schema.get("maxLength"), int) and schema["maxLength"] < LONGEST:
        yield "maxLength", "a" * (schema["maxLength"] + 1)
    if schema.get("minItems", 0) > 0:
        yield "minItems", []
    if isinstance(schema.get("maxItems"), int) and schema["maxItems"] < LONGEST:
        yield "maxItems", [None] * (schema["maxItems"] + 1)
    if "enum" in schema:
        yield "enum", "fuzz-not-in-enum"


def _mutations(schema: Any, base: Any, path: Path) -> Iterator[tuple[Any, str]]:
    """One-change mutants of the object at ``path`` in ``base`` whose schema is ``schema``."""
    here = json_pointer(path)
    for name in schema.get("required", ()):
        parent = copy.deepcopy(base)
        target = parent
        for key in path:
            target = target[key]
        if isinstance(target, dict) and name in target:
            del target[name]
            yield parent, f"missing required member {here}/{name}"
    if schema.get("additionalProperties") is False or schema.get("unevaluatedProperties") is False:
        yield _set(base, (*path, EXTRA_MEMBER), True), f"extra member {here}/{EXTRA_MEMBER}"


def near_valid_cases(schema: Any, base: Any, accepts: Accepts) -> list[Mutant]:
    """The minimal valid ``base`` with exactly one change that the gateway refuses."""
    candidates: list[tuple[Any, str]] = []
    if isinstance(schema, dict) and isinstance(base, dict):
        candidates += _mutations(schema, base, ())
        for path, sub, value in _members(schema, base):
            if value is None or not isinstance(sub, dict):
                continue
            pointer = json_pointer(path)
            if isinstance(value, dict):
                candidates += _mutations(sub, base, path)
            wrong = next(((t, v) for t, v in _WRONG_TYPED if _types(sub) and t not in _types(sub)), None)
            if wrong is not None and not ("number" in _types(sub) and wrong[0] == "integer"):
                candidates.append((_set(base, path, wrong[1]), f"wrong type at {pointer}: {wrong[0]}"))
            for keyword, bad in _out_of_range(sub):
                candidates.append((_set(base, path, bad), f"out of range at {pointer}: {keyword} {_short(bad)}"))
    candidates.append(([base] if not isinstance(base, list) else {}, "wrong type of the whole body"))
    return [Mutant(value, what) for value, what in candidates if encodable(value) and not accepts(value)]
