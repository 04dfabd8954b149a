"""Checking payloads against a compiled contract version.

The hot path uses ``jsonschema-rs`` validators built once per contract version (≈2 µs per 1 KiB document,
against ≈470 µs for pure-Python ``jsonschema``; see ``../shared/ENGINEERING.md``). A valid payload costs one
``is_valid`` call. Bodies are parsed once with orjson and never re-serialised: the caller forwards the original
bytes.

Listing the violations of an invalid payload is capped: ``jsonschema-rs``'s ``iter_errors`` builds every error
before returning the first (measured on 0.60 and 0.61: 400k failing items take 5 s whether one error is read or
all; 10 MiB of them take 100 s), so the violations are found with the reference engine (Python ``jsonschema``,
whose ``iter_errors`` is a generator) and the search stops at ``limit + 1``. Only when that search proves there
are at most ``limit`` violations are they listed by ``jsonschema-rs`` (cheap then), so a payload with few
violations reads exactly as it always did.

A valid body is first tried on the fast path (``fastpath.py``): checked as raw bytes in Rust, no Python objects
built. It is parsed into Python objects only when the fast path cannot say "valid" (the authority then lists the
violations) or when a caller needs the document (``keep``: context checks, structured output, kept payloads).

Bodies of ``offload_bytes`` or more are parsed and checked in a small thread pool (:func:`off_loop`) so that a
big document never holds the event loop for the whole of its parse and check.
"""

from __future__ import annotations

import asyncio
import functools
import itertools
import re
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

import jsonschema
import jsonschema_rs
import orjson
import referencing
import referencing.exceptions
from multidict import CIMultiDictProxy, MultiMapping

from gateway.contracts.document import ContractSpec, json_pointer
from gateway.contracts.fastpath import Resolve, accepts, fast_validator
from gateway.errors import Violation

Verdict = tuple[tuple[Violation, ...], int]
"""The violations listed (at most ``limit``) and how many there are: exact up to ``limit``; ``limit + 1`` means
"more than ``limit``" (the search stopped there). ``total == 0`` means valid."""
NO_VIOLATIONS: Verdict = ((), 0)
T = TypeVar("T")
_EMPTY_REGISTRY: referencing.Registry[Any] = referencing.Registry()
_Reference = jsonschema.Draft202012Validator


class CompiledSchema:
    """A draft 2020-12 schema compiled to a native validator, with format assertions on, and the reference
    validator that finds the first violations of an invalid payload without collecting all of them, and the
    fast path on raw bytes when the schema is in the subset where it agrees with the native validator."""

    __slots__ = ("_fast", "_reference", "_reference_registry", "_schema", "_validator")

    def __init__(
        self,
        schema: Any,
        registry: jsonschema_rs.Registry | None = None,
        reference_registry: referencing.Registry[Any] | None = None,
    ) -> None:
        self._validator = jsonschema_rs.Draft202012Validator(
            schema, validate_formats=True, registry=registry, offline=True
        )
        self._schema = schema
        self._reference_registry = reference_registry or _EMPTY_REGISTRY
        self._reference: _Reference | None = None
        self._fast = fast_validator(schema, _resolver(self._reference_registry))

    def _reference_validator(self) -> _Reference:
        """The reference validator, built on the first invalid payload: it only lists violations, and building it
        was two thirds of compiling a contract (half of start-up with thousands of contracts). Two threads may
        both build it; either result is the same validator."""
        if self._reference is None:
            self._reference = _Reference(
                self._schema, registry=self._reference_registry, format_checker=_Reference.FORMAT_CHECKER
            )
        return self._reference

    @property
    def has_fast_path(self) -> bool:
        """Whether valid bytes can be recognised without parsing them into Python objects."""
        return self._fast is not None

    def accepts(self, body: bytes | str) -> bool:
        """``True`` only when ``body`` is JSON that meets the schema; ``False`` means "parse and :meth:`check`"."""
        return self._fast is not None and accepts(self._fast, body)

    def check(self, instance: Any, limit: int) -> Verdict:
        """``NO_VIOLATIONS``, or the first ``limit`` violations and their count (``limit + 1``: more than that)."""
        if self._validator.is_valid(instance):
            return NO_VIOLATIONS
        try:
            first = list(itertools.islice(self._reference_validator().iter_errors(instance), limit + 1))
        except (RecursionError, referencing.exceptions.Unresolvable, re.error):
            first = []  # deep nesting under a recursive schema, no shared schemas given, or an ECMA 262 pattern
            # Python's re cannot read (``\p{L}``): the native engine copes
        if len(first) > limit:
            return tuple(_reference_violation(e) for e in first[:limit]), limit + 1
        errors = list(self._validator.iter_errors(instance))  # at most ``limit`` by the search above: cheap
        return tuple(_violation(e) for e in errors[:limit]), min(len(errors), limit + 1)


def _resolver(registry: referencing.Registry[Any]) -> Resolve:
    """Shared schemas for the fast path, from the same registry the reference engine resolves with."""

    def resolve(uri: str) -> Any:
        resource = registry.get(uri)
        return None if resource is None else resource.contents

    return resolve


def _violation(error: jsonschema_rs.ValidationError) -> Violation:
    keyword = error.schema_path[-1] if error.schema_path else type(error.kind).__name__
    return Violation(json_pointer(error.instance_path), str(keyword), error.message)


def _reference_violation(error: jsonschema.ValidationError) -> Violation:
    return Violation(json_pointer(error.absolute_path), str(error.validator), error.message)


_CHECKS = ThreadPoolExecutor(max_workers=2, thread_name_prefix="contract-check")
"""Where big payloads are parsed and checked. Two workers: the work holds the GIL for most of its time, so more
threads would not check faster; they would only let more big bodies compete with the event loop at once. Excess
big bodies wait their turn here; small bodies never come here, so they are never queued behind big ones."""


async def off_loop(size: int, threshold: int, work: Callable[..., T], *args: Any) -> T:
    """``work(*args)`` on the loop for a payload under ``threshold`` bytes, else in the checking pool.

    orjson and jsonschema-rs hold the GIL while they run (measured: a 10 MiB parse is one 0.24 s block), but
    the pool still turns one stall of the whole parse-and-check into short slices the loop interleaves with.
    """
    if size < threshold:
        return work(*args)
    return await asyncio.get_running_loop().run_in_executor(_CHECKS, functools.partial(work, *args))


FAST_ON_LOOP_BYTES = 1024 * 1024
"""A valid body the fast path can vouch for is checked on the loop up to this size, whatever ``offload_bytes``
says: reading bytes in Rust costs about 0.9 ms per MiB (measured), less than a round trip through the pool
(at 100 KiB the hand-off cost more than the check). Only a body it cannot vouch for, which must be parsed into
objects and have its violations listed, goes to the pool."""


def _accepted_on_loop(
    schema: CompiledSchema | None, body: bytes | None, content_type: str, encoding: str | None, keep: bool
) -> bool:
    """Whether ``body`` is valid by the fast path alone, with no document wanted (``keep`` false)."""
    return (
        schema is not None
        and body is not None
        and not keep
        and len(body) <= FAST_ON_LOOP_BYTES
        and schema.has_fast_path
        and _unusable(body, content_type, encoding) is None
        and schema.accepts(body)
    )


def is_json_media_type(content_type: str) -> bool:
    """``application/json`` and structured-syntax ``+json`` types (RFC 6839) carry JSON."""
    return content_type == "application/json" or (
        content_type.startswith("application/") and content_type.endswith("+json")
    )


def _body_violation(keyword: str, message: str) -> Verdict:
    return (Violation("", keyword, message),), 1


def _unusable(body: bytes, content_type: str, content_encoding: str | None) -> Verdict | None:
    """Why a body a contract says is JSON cannot be checked at all, or ``None``."""
    if content_encoding not in (None, "", "identity"):
        return _body_violation(
            "contentEncoding",
            f"content encoding {content_encoding!r} is not accepted on a contracted operation",
        )
    if not body:
        return _body_violation("required", "the body is empty but the contract requires a JSON document")
    if not is_json_media_type(content_type):
        return _body_violation("contentType", f"content type {content_type!r} is not JSON (expected application/json)")
    return None


def parse_json_payload(body: bytes, content_type: str, content_encoding: str | None) -> tuple[Any, Verdict]:
    """Parse a body a contract says is JSON; an unusable body is a violation, never an exception."""
    unusable = _unusable(body, content_type, content_encoding)
    return (None, unusable) if unusable is not None else _parse(body)


def _parse(body: bytes) -> tuple[Any, Verdict]:
    try:
        return orjson.loads(body), NO_VIOLATIONS
    except orjson.JSONDecodeError as exc:
        return None, _body_violation("json", f"the body is not valid JSON: {exc}")


def check_payload(
    schema: CompiledSchema, body: bytes, content_type: str, content_encoding: str | None, limit: int, *, keep: bool
) -> tuple[Any, Verdict]:
    """A JSON body's verdict, and its parsed document when ``keep`` is true or it had to be parsed anyway (else
    ``None``). A body the fast path accepts is parsed only for ``keep``: no objects built just to be freed."""
    unusable = _unusable(body, content_type, content_encoding)
    if unusable is not None:
        return None, unusable
    if schema.accepts(body):
        return (orjson.loads(body) if keep else None), NO_VIOLATIONS
    document, problems = _parse(body)
    return document, problems if problems[1] else schema.check(document, limit)


def headers_instance(headers: CIMultiDictProxy[str]) -> dict[str, str]:
    """Headers as a JSON object: lower-cased names, repeated fields joined with ", " (RFC 9110 §5.3)."""
    instance: dict[str, str] = {}
    for name, value in headers.items():
        key = name.lower()
        instance[key] = f"{instance[key]}, {value}" if key in instance else value
    return instance


def query_instance(query: MultiMapping[str]) -> dict[str, str | list[str]]:
    """Query parameters as a JSON object: a single value is a string, a repeated one an array of strings."""
    instance: dict[str, str | list[str]] = {}
    for key in query:
        values = query.getall(key)
        instance[key] = values[0] if len(values) == 1 else values
    return instance


def _merge(parts: Iterable[tuple[str, Verdict]], limit: int) -> Verdict:
    """Concatenate per-part violations, prefixing pointers with the part name, capped at ``limit`` (a total
    above ``limit`` is reported as ``limit + 1``, "more than ``limit``", as :meth:`CompiledSchema.check` does)."""
    listed: list[Violation] = []
    total = 0
    for prefix, (violations, count) in parts:
        total += count
        listed += [v.under(prefix) for v in violations]
    return tuple(listed[:limit]), min(total, limit + 1)


class RequestView(Protocol):
    """What a request check reads: an aiohttp request satisfies it, and so does a dry-run payload.

    Parts are read only when the contract has a schema for them (parsing the query string is not free).
    """

    @property
    def content_type(self) -> str: ...

    @property
    def headers(self) -> CIMultiDictProxy[str]: ...

    @property
    def query(self) -> MultiMapping[str]: ...


@dataclass(frozen=True, slots=True)
class CompiledContract:
    """One version of a contract with its validators compiled; immutable, so safe to share across requests."""

    spec: ContractSpec
    version: int
    request_body: CompiledSchema | None
    request_headers: CompiledSchema | None
    request_query: CompiledSchema | None
    responses: Mapping[str, CompiledSchema]
    events: Mapping[str, CompiledSchema] = field(default_factory=dict)
    rpc_params: CompiledSchema | None = None
    rpc_result: CompiledSchema | None = None
    rpc_error: CompiledSchema | None = None
    structured_output: CompiledSchema | None = None
    """The schema of JSON inside message contents, when the contract gives one (else the caller's own)."""

    @property
    def id(self) -> str:
        return self.spec.id

    @property
    def buffers_request(self) -> bool:
        """Whether the request body is needed: to check it, or to read the schema the caller asked for."""
        return self.request_body is not None or (
            self.spec.structured_output is not None and self.structured_output is None
        )

    def response_schema(self, status: int) -> CompiledSchema | None:
        """Exact status first, then the class (``2XX``), then ``default``, as in OpenAPI."""
        return _by_status(self.responses, status)

    def event_schema(self, status: int) -> CompiledSchema | None:
        """The schema each event of a ``text/event-stream`` answer with ``status`` must meet, if any."""
        return _by_status(self.events, status) if self.events else None

    def check_request(
        self, request: RequestView, body: bytes | None, limit: int, *, keep: bool = True
    ) -> tuple[Any, Verdict]:
        """The parsed body (``None`` without a body schema, or when valid and not ``keep``) and the violations in
        the headers (pointer ``/headers/...``), query (``/query/...``) and body (``/...``)."""
        encoding = request.headers.get("Content-Encoding")
        return self._with_head(request, self.check_body(request.content_type, encoding, body, limit, keep), limit)

    async def check_request_off_loop(
        self, request: RequestView, body: bytes | None, limit: int, threshold: int, *, keep: bool = True
    ) -> tuple[Any, Verdict]:
        """:meth:`check_request`, the body parsed and checked in the pool when it is ``threshold`` bytes or more
        (headers and query are bounded by the header limits, so they are checked on the loop)."""
        content_type, encoding = request.content_type, request.headers.get("Content-Encoding")
        size = len(body) if body is not None and self.request_body is not None else 0
        if size >= threshold and _accepted_on_loop(self.request_body, body, content_type, encoding, keep):
            return self._with_head(request, (None, NO_VIOLATIONS), limit)
        checked = await off_loop(size, threshold, self.check_body, content_type, encoding, body, limit, keep)
        return self._with_head(request, checked, limit)

    def check_body(
        self, content_type: str, encoding: str | None, body: bytes | None, limit: int, keep: bool = True
    ) -> tuple[Any, Verdict | None]:
        """The request body's document (see :func:`check_payload`) and verdict; ``(None, None)`` when the
        contract has no body schema. Reads nothing but its arguments, so it may run in a worker thread."""
        if self.request_body is None:
            return None, None
        return check_payload(self.request_body, body or b"", content_type, encoding, limit, keep=keep)

    def _with_head(self, request: RequestView, checked: tuple[Any, Verdict | None], limit: int) -> tuple[Any, Verdict]:
        document, body_verdict = checked
        checks: list[tuple[str, Verdict]] = []
        if self.request_headers is not None:
            checks.append(("/headers", self.request_headers.check(headers_instance(request.headers), limit)))
        if self.request_query is not None:
            checks.append(("/query", self.request_query.check(query_instance(request.query), limit)))
        if body_verdict is not None:
            checks.append(("", body_verdict))
        return document, _merge(checks, limit)

    def check_response(
        self, schema: CompiledSchema, body: bytes, content_type: str, content_encoding: str | None, limit: int,
        keep: bool = True,
    ) -> tuple[Any, Verdict]:  # fmt: skip
        """The body's document (see :func:`check_payload`) and its violations."""
        return check_payload(schema, body, content_type, content_encoding, limit, keep=keep)

    async def check_response_off_loop(
        self,
        schema: CompiledSchema,
        body: bytes,
        content_type: str,
        content_encoding: str | None,
        limit: int,
        threshold: int,
        *,
        keep: bool = True,
    ) -> tuple[Any, Verdict]:
        """:meth:`check_response` in the pool when the body is ``threshold`` bytes or more (and the fast path
        cannot vouch for it on the loop)."""
        if len(body) >= threshold and _accepted_on_loop(schema, body, content_type, content_encoding, keep):
            return None, NO_VIOLATIONS
        return await off_loop(len(body), threshold, self.check_response, schema, body, content_type,
                              content_encoding, limit, keep)  # fmt: skip

    def check_answer(self, status: int, body: bytes, content_type: str, limit: int) -> Verdict | None:
        """An answer given outside the data path (a dry run, a fallback, a person's correction): its violations
        under the schema for ``status``, or ``None`` when no schema covers that status."""
        schema = self.response_schema(status)
        return None if schema is None else self.check_response(schema, body, content_type, None, limit, False)[1]


def _by_status(schemas: Mapping[str, CompiledSchema], status: int) -> CompiledSchema | None:
    return schemas.get(str(status)) or schemas.get(f"{status // 100}XX") or schemas.get("default")


def compile_contract(
    spec: ContractSpec,
    version: int,
    registry: jsonschema_rs.Registry | None = None,
    reference_registry: referencing.Registry[Any] | None = None,
) -> CompiledContract:
    """Build every validator of one contract version; raises ``ValueError`` when a schema cannot compile.
    ``registry`` and ``reference_registry`` hold the same shared schemas for the two engines."""

    def build(schema: Any) -> CompiledSchema:
        return CompiledSchema(schema, registry, reference_registry)

    def optional(schema: Any | None) -> CompiledSchema | None:
        return None if schema is None else build(schema)

    rpc = spec.rpc
    return CompiledContract(
        spec=spec,
        version=version,
        request_body=None if spec.request_body is None else build(spec.request_body),
        request_headers=None if spec.request_headers is None else build(spec.request_headers),
        request_query=None if spec.request_query is None else build(spec.request_query),
        responses={status: build(schema) for status, schema in spec.responses.items()},
        events={status: build(schema) for status, schema in spec.events.items()},
        rpc_params=optional(rpc.params) if rpc else None,
        rpc_result=optional(rpc.result) if rpc else None,
        rpc_error=optional(rpc.error) if rpc else None,
        structured_output=optional((spec.structured_output or {}).get("schema")),
    )
