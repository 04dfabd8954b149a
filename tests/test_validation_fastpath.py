"""The bytes fast path may only ever say "valid" when jsonschema-rs (the authority) would, on the JSON the gateway
parses (orjson): random documents against random subset schemas, JSON corner cases, and the schemas it must not
take. A valid body nobody reads is never turned into Python objects."""

from __future__ import annotations

import gc
import json
import tracemalloc
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import aiohttp
import jsonschema_rs
import orjson
import pytest
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st

from gateway.admin.client import AdminClient
from gateway.app import RunningGateway
from gateway.contracts import validation
from gateway.contracts.registry import SchemaResources
from gateway.contracts.validation import NO_VIOLATIONS, CompiledSchema, check_payload, parse_json_payload
from tests.conftest import Upstream, contract

JSON = "application/json"
JSON_HEADERS = {"Content-Type": JSON}


def authority(schema: Any, body: bytes) -> bool | None:
    """jsonschema-rs's verdict on what orjson parses (``None``: not JSON for the gateway), formats asserted."""
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    return bool(jsonschema_rs.Draft202012Validator(schema, validate_formats=True).is_valid(document))


# -- random subset schemas and documents ------------------------------------------------------------------

NUMBERS = st.one_of(
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from([0, 1, -1, 1.0, 0.5, 2**53, 2**53 + 1, 2**64, 2**64 + 1, -0.0]),
)
TRICKY_STRINGS = st.sampled_from(
    ["a@b.c", "a@[127.0.0.1]", "2020-02-29", "2020-02-30", "1.2.3.04", "http://x/ y", "\u0663", "é", "a\n", "😀"]
)  # formats the two engines' checkers may read differently; Unicode digits, letters and line ends for patterns
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    NUMBERS,
    st.text(max_size=6),
    TRICKY_STRINGS,
    st.text("aZ0-_ .\n\r\u2028\ufeff\u00a0٣é😀", max_size=4),
)
DOCUMENTS = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.sampled_from("abcd"), inner, max_size=4),
    max_leaves=12,
)
KEYS = st.sampled_from("abcd")
PLAIN_PATTERN_PARTS = [
    "a",
    "Z",
    "0",
    "-",
    " ",
    "\\.",
    "[a-z]",
    "[A-Z0-9_-]",
    "(",
    "(?:",
    ")",
    "|",
    "^",
    "$",
    "+",
    "*",
    "?",
]
PATTERN_PARTS = [*PLAIN_PATTERN_PARTS, "{1,2}", "\\d", "\\w", "\\s", "\\b", "\\B", ".", "[^a]", "(?=a)", "\\p{L}"]
"""Plain ASCII syntax (the fast path takes it) and the escapes, classes and assertions the engines read apart."""
TYPES = st.sampled_from(["null", "boolean", "integer", "number", "string", "array", "object"])
BOUNDS = st.sampled_from(["minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"])
COUNTS = st.sampled_from(["minLength", "maxLength", "minItems", "maxItems", "minProperties", "maxProperties"])
LEAF_SCHEMAS = st.one_of(
    st.builds(lambda t: {"type": t}, TYPES),
    st.builds(lambda k, v: {k: v}, BOUNDS, NUMBERS),
    st.builds(lambda k, v: {k: v}, COUNTS, st.integers(0, 4)),
    st.builds(lambda v: {"multipleOf": v}, st.integers(1, 5) | st.sampled_from([0.5, 0.1, 2**60])),
    st.builds(lambda v: {"enum": v}, st.lists(SCALARS, min_size=1, max_size=3)),
    st.builds(lambda v: {"const": v}, DOCUMENTS),
    st.builds(lambda v: {"uniqueItems": v}, st.booleans()),
    st.builds(lambda v: {"required": v}, st.lists(KEYS, unique=True, max_size=3)),
    st.builds(lambda f: {"format": f}, st.sampled_from(["email", "date", "uri", "ipv4", "uuid"])),
    st.builds(lambda p: {"pattern": p}, st.lists(st.sampled_from(PATTERN_PARTS), min_size=1, max_size=5).map("".join)),
    st.booleans(),
)  # fmt: skip


COMBINATORS = st.sampled_from(["allOf", "anyOf", "oneOf"])


def _composite(inner: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.one_of(
        st.builds(lambda p: {"properties": p}, st.dictionaries(KEYS, inner, max_size=3)),
        st.builds(lambda a: {"additionalProperties": a}, inner),
        st.builds(lambda i: {"items": i}, inner),
        st.builds(lambda p: {"prefixItems": p}, st.lists(inner, min_size=1, max_size=2)),
        st.builds(lambda k, s: {k: s}, COMBINATORS, st.lists(inner, min_size=1, max_size=3)),
        st.builds(lambda s: {"not": s}, inner),
        st.builds(lambda c, n: {"contains": c, "minContains": n}, inner, st.integers(0, 2)),
        st.builds(lambda a, b: {**a, **b} if isinstance(a, dict) and isinstance(b, dict) else a, inner, inner),
    )  # fmt: skip


SCHEMAS = st.recursive(LEAF_SCHEMAS, _composite, max_leaves=6)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(schema=SCHEMAS, documents=st.lists(DOCUMENTS, min_size=1, max_size=4))
def test_the_fast_path_verdict_is_the_authoritys(schema: Any, documents: list[Any]) -> None:
    try:
        compiled = CompiledSchema(schema)
    except (ValueError, jsonschema_rs.ValidationError):
        assume(False)  # a pattern jsonschema-rs does not compile: such a contract is refused at registration
        return
    for document in documents:
        body = orjson.dumps(document) if _fits(document) else json.dumps(document).encode()
        verdict = authority(schema, body)
        if compiled.accepts(body):
            assert verdict, (schema, body)  # never "valid" where the authority says otherwise
        _, (_, total) = check_payload(compiled, body, JSON, None, 10, keep=False)
        assert (total == 0) == bool(verdict), (schema, body)


def _fits(document: Any) -> bool:
    """orjson refuses to write integers beyond 64 bits; the standard library writes them (as agents may)."""
    if isinstance(document, int) and not isinstance(document, bool):
        return -(2**63) <= document < 2**64
    if isinstance(document, list):
        return all(_fits(item) for item in document)
    if isinstance(document, dict):
        return all(_fits(item) for item in document.values())
    return True


PATTERN_TEXT = st.text("aZ0é٣_- .\n\r\u2028\ufeff\u00a0😀", max_size=4)


@settings(max_examples=300, deadline=None)
@example(parts=["\\b", "a"], texts=["0éa٣"])  # found by a wider probe: accepted on bytes, refused by the authority
@example(parts=["\\B"], texts=["٣"])
@example(parts=["\\s", "(?=a)"], texts=[" \ufeffa"])
@given(parts=st.lists(st.sampled_from(PATTERN_PARTS), min_size=1, max_size=4), texts=st.lists(PATTERN_TEXT, max_size=8))
def test_patterns_on_the_fast_path_match_as_the_authoritys(parts: list[str], texts: list[str]) -> None:
    """Regular expressions are where the engines differ most (Unicode classes, word boundaries, ``.``)."""
    schema = {"type": "string", "pattern": "".join(parts)}
    try:
        compiled = CompiledSchema(schema)
    except (ValueError, jsonschema_rs.ValidationError):
        assume(False)
        return
    for text in texts:
        body = orjson.dumps(text)
        assert not compiled.accepts(body) or authority(schema, body), (schema, text)


# -- JSON corner cases --------------------------------------------------------------------------------------

OBJECT_A_INT = {"type": "object", "properties": {"a": {"type": "integer", "maximum": 10}}}


@pytest.mark.parametrize(
    "body",
    [
        b'{"a":1,"a":"x"}',  # duplicate keys: the last one counts, for orjson as for the fast path
        b'{"a":"x","a":1}',
        b'{"a":1.0}',  # 1.0 is an integer in 2020-12
        b'{"a":1.5}',
        b'{"a":18446744073709551617}',  # beyond 64 bits: orjson makes a double
        b'{"a":-0}',
        b'{"a":NaN}',
        b'{"a":1e400}',
        b'{"a":"\\ud800"}',  # a lone surrogate
        b'{"a":"\xff"}',  # not UTF-8
        b'\xef\xbb\xbf{"a":1}',  # a byte-order mark
        b'{"a":1} x',
        b"[" * 200 + b"]" * 200,  # deeper than the fast path's parser goes
        b'{"b":"\\u0000"}',
    ],
)
def test_json_corner_cases_keep_todays_verdict(body: bytes) -> None:
    compiled = CompiledSchema(OBJECT_A_INT)
    assert compiled.has_fast_path
    document, expected = parse_json_payload(body, JSON, None)
    if not expected[1]:
        expected = compiled.check(document, 10)
    kept, verdict = check_payload(compiled, body, JSON, None, 10, keep=True)
    assert verdict == expected
    assert kept == document


@pytest.mark.parametrize(
    "schema",
    [
        {"type": "string", "format": "email"},
        {"type": "string", "pattern": "^.$"},
        {"type": "string", "pattern": "\\bword"},
        {"type": "string", "pattern": "(?=a)"},
        {"patternProperties": {"^x\\w": {"type": "integer"}}},
        {"unevaluatedProperties": False},
        {"maximum": 2**64},
        {"enum": [2**60]},
        {"multipleOf": 0.1},
        {"contentMediaType": "application/json"},
        {"properties": {"a": {"$id": "https://other.test/a.json", "type": "integer"}}},
        {"$defs": {"a": {"$anchor": "x", "type": "integer"}}, "$ref": "#x"},
        {"properties": {"a": {"format": "date"}}},
    ],
)
def test_schemas_where_the_engines_may_disagree_take_the_authoritys_path(schema: Any) -> None:
    assert not CompiledSchema(schema).has_fast_path


def test_shared_schemas_are_followed_to_decide_the_fast_path() -> None:
    resources = SchemaResources(
        [
            {"$id": "https://example.test/plain.json", "type": "object", "required": ["claim"]},
            {"$id": "https://example.test/dated.json", "properties": {"at": {"format": "date"}}},
        ]
    )
    plain = CompiledSchema({"$ref": "https://example.test/plain.json"}, resources.for_rust, resources.registry)
    dated = CompiledSchema({"$ref": "https://example.test/dated.json"}, resources.for_rust, resources.registry)
    assert plain.has_fast_path
    assert plain.accepts(b'{"claim":"x"}')
    assert not plain.accepts(b"{}")
    assert not dated.has_fast_path
    assert check_payload(dated, b'{"at":"yesterday"}', JSON, None, 10, keep=False)[1][1] == 1


def test_a_valid_body_nobody_reads_is_not_parsed_into_objects() -> None:
    """The point of the fast path: the checked document's objects are never built (measured by allocation)."""
    item = {"claim": "handoffs fail at the coordination layer", "score": 0.5}
    schema = {"type": "array", "items": {"type": "object", "required": ["claim"]}}
    compiled = CompiledSchema(schema)
    body = orjson.dumps([item] * 2000)  # ≈ 110 KB of JSON, ≈ 6,000 Python objects when parsed
    tracemalloc.start()
    try:
        document, verdict = check_payload(compiled, body, JSON, None, 10, keep=False)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert (document, verdict) == (None, NO_VIOLATIONS)
    assert peak < len(body) // 10, peak  # parsed, the list alone would take 16 KB and its dicts ≈ 400 KB
    kept, _ = check_payload(compiled, body, JSON, None, 10, keep=True)
    assert kept == [item] * 2000


def test_a_bound_beyond_doubles_keeps_the_authoritys_verdict() -> None:
    """2**64 + 1 parses to the double 2**64; the authority compares it with the exact bound, the fast path would
    not: such a schema is checked by the authority alone (fails if the compile-time subset check is dropped)."""
    compiled = CompiledSchema({"maximum": 2**64})
    body = b"18446744073709551617"
    assert authority({"maximum": 2**64}, body) is False
    assert check_payload(compiled, body, JSON, None, 10, keep=False)[1][1] == 1


def test_an_ecma_pattern_pythons_re_cannot_read_still_lists_its_violation() -> None:
    """``\\p{L}`` compiles in jsonschema-rs but not in Python's re (the reference engine's listing): the native
    engine lists the violation instead of the check raising (which would have been a 500)."""
    compiled = CompiledSchema({"type": "string", "pattern": "\\p{L}"})
    assert not compiled.has_fast_path
    assert compiled.check("é", 5) == NO_VIOLATIONS
    violations, total = compiled.check("0", 5)
    assert total == 1
    assert violations[0].keyword == "pattern"


def test_plain_ascii_patterns_take_the_fast_path() -> None:
    compiled = CompiledSchema({"patternProperties": {"^x-[a-z]+$": {"type": "string", "pattern": "^[A-Z]{3}$"}}})
    assert compiled.has_fast_path
    assert compiled.accepts(b'{"x-cur":"EUR","other":1}')
    assert not compiled.accepts(b'{"x-cur":"EURO"}')


OBJECTS = {"type": "object", "properties": {"items": {"type": "array", "items": {"type": "object"}}}}


async def test_valid_handoffs_through_the_gateway_trigger_no_collection_storm(
    gateway: RunningGateway, admin: AdminClient, upstream: Upstream, http: aiohttp.ClientSession
) -> None:
    """A ≈ 100 KB valid document, checked both ways on 20 round trips, is never turned into objects: those trips
    trigger fewer young collections than 10 parses of it would (40 parses before the fast path)."""
    await admin.request(
        "PUT", "/contracts/agent.tasks", body=contract(request={"body": OBJECTS}, responses={"200": OBJECTS})
    )
    body = orjson.dumps({"items": [{"claim": "x"}] * 8000})
    young: list[int] = []

    def count(phase: str, info: dict[str, Any]) -> None:
        if phase == "start" and info["generation"] == 0:
            young.append(1)

    gc.callbacks.append(count)
    try:
        orjson.loads(body)
        one_parse = len(young)
        young.clear()
        for _ in range(20):
            async with http.post(gateway.data_url + "/agent/tasks", data=body, headers=JSON_HEADERS) as resp:
                assert resp.status == 200, await resp.text()
                assert resp.headers["X-Contract-Verdict"].startswith("valid")
                assert await resp.read() == body
    finally:
        gc.callbacks.remove(count)
    assert one_parse >= 5
    assert len(young) < 10 * one_parse, (len(young), one_parse)


class _CountingPool(ThreadPoolExecutor):
    """The checking pool, counting what is handed to it (which thread a check runs on is the behaviour here)."""

    def __init__(self) -> None:
        super().__init__(max_workers=1)
        self.submitted = 0

    def submit(self, fn: Any, /, *args: Any, **kwargs: Any) -> Any:
        self.submitted += 1
        return super().submit(fn, *args, **kwargs)


async def test_a_big_valid_body_the_fast_path_vouches_for_stays_on_the_loop(monkeypatch: pytest.MonkeyPatch) -> None:
    """Above ``offload_bytes`` only a body that must be parsed (invalid, or wanted as a document) goes to the pool:
    handing a valid 100 KiB body to a thread cost more than checking its bytes."""
    pool = _CountingPool()
    monkeypatch.setattr(validation, "_CHECKS", pool)
    compiled = validation.CompiledContract.__new__(validation.CompiledContract)
    schema = CompiledSchema({"type": "array", "items": {"type": "string"}})
    assert schema.has_fast_path
    valid, invalid = orjson.dumps(["x" * 100] * 1000), orjson.dumps(["x" * 100] * 999 + [1])

    async def check(body: bytes, *, keep: bool) -> Any:
        return await compiled.check_response_off_loop(schema, body, "application/json", None, 5, 64 * 1024, keep=keep)

    try:
        assert await check(valid, keep=False) == (None, NO_VIOLATIONS)
        assert pool.submitted == 0
        assert (await check(valid, keep=True))[1] == NO_VIOLATIONS  # the document is wanted: parsed in the pool
        assert pool.submitted == 1
        _, (violations, total) = await check(invalid, keep=False)
        assert (total, violations[0].pointer, pool.submitted) == (1, "/999", 2)
    finally:
        pool.shutdown()
