r"""The valid-path fast path: a schema checked against the raw JSON bytes, without building Python objects.

``corvus-json-schema-rs`` parses JSON text in Rust (the GIL released while it parses) and evaluates draft
2020-12 there, so a valid 100 KiB document costs no Python objects at all: no allocation, no freeing, no garbage
collections triggered by it. It passes the vendored JSON-Schema-Test-Suite exactly where ``jsonschema-rs`` does
(``tests/test_engines_agree.py``), but it is not the authority: ``jsonschema-rs`` is. So the fast path may only
ever say "valid"; anything else ("invalid", a parse error, a depth limit) sends the payload down the authority's
path, which produces the verdict and the violation list exactly as before.

A schema gets a fast path only when everything it uses, through every ``$ref``, is in the subset where the two
engines are known to agree (checked once, at compile time, by :func:`fast_validator`). Left out, deliberately:

- ``format``: the engines' format checkers are different code (the gateway asserts formats);
- ``pattern`` / ``patternProperties`` beyond plain ASCII syntax (literals, escaped punctuation, ``[...]`` of ASCII
  characters and ranges, groups, ``|``, anchors, quantifiers): the two regex engines disagree on ``\b``, ``\s``,
  ``\w``, ``\d``, ``.``, negated classes and lookarounds over non-ASCII text (measured: 190 of 3,000 random
  patterns made of those had a string the fast path accepted and the authority refused; 0 of 1,253 plain ones);
- ``unevaluated*``, ``$dynamicRef`` and ``content*`` (which this engine asserts and ``jsonschema-rs`` does not);
- numbers in a schema beyond ±2**53 and a non-integer ``multipleOf``: this engine compares doubles, the
  authority exact integers (``maximum: 2**64`` and the document ``2**64 + 1`` differ);
- ``$ref`` other than to the schema's own ``#...`` fragments or to a shared schema by its absolute ``$id``, and a
  nested ``$id`` (a change of base URI).

JSON text itself reads the same way in both parsers where it matters: duplicate keys keep the last value
(orjson does too), lone surrogates, invalid UTF-8, ``NaN`` and trailing data are errors (so the slow path, and
its ``json`` violation, decides), and integers beyond 64 bits become doubles (as orjson makes them).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import corvus_json_schema_rs as corvus

Resolve = Callable[[str], Any]
"""The contents of a shared schema by its absolute URI, or ``None``."""

_SUBSCHEMA = frozenset({"additionalProperties", "items", "not", "if", "then", "else", "contains", "propertyNames"})
_SUBSCHEMA_LISTS = frozenset({"allOf", "anyOf", "oneOf", "prefixItems"})
_SUBSCHEMA_MAPS = frozenset({"properties", "$defs", "dependentSchemas"})
_NUMBERS = frozenset({"minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"})
_COUNTS = frozenset({"minLength", "maxLength", "minItems", "maxItems", "minProperties", "maxProperties",
                     "minContains", "maxContains"})  # fmt: skip
_INERT = frozenset({"$schema", "$comment", "$anchor", "title", "description", "default", "examples", "deprecated",
                    "readOnly", "writeOnly", "required", "dependentRequired", "uniqueItems", "type"})  # fmt: skip
_LITERAL = r"""[A-Za-z0-9 _\-:/@,;=~!#%&'"<>]"""
_PLAIN_PATTERN = re.compile(
    rf"""(?:\\[.\-/+*?()\[\]{{}}|^$\\]"""  # an escaped metacharacter
    rf"""|\[(?:[A-Za-z0-9 _\-:/@,;=~!#%&'"<>.+*]|\\[\-\]\\.])+\]"""  # a class of ASCII characters, not negated
    rf"""|\(\?:|\((?!\?)|[)|^$*+?]|\{{\d+(?:,\d*)?\}}|{_LITERAL})*"""  # a group captures nothing else
)
"""Regular expressions both engines read alike: ASCII only, no class escapes, no ``.``, no assertions but anchors."""
_EXACT = 2**53
"""Integers a double holds exactly: within it, both engines compare numbers the same way."""


class _OutsideSubset(Exception):
    """A keyword or value where the engines may disagree: this schema gets no fast path."""


def fast_validator(schema: Any, resolve: Resolve) -> corvus.Validator | None:
    """A validator for ``schema`` on JSON bytes, or ``None`` when the schema is outside the agreed subset."""
    try:
        _walk(schema, resolve, root=True, seen=set())
        return corvus.compile(schema, assert_format=True, resolve_document=resolve)
    except (_OutsideSubset, corvus.SchemaCompilationError, ValueError, TypeError, RecursionError):
        return None


def accepts(validator: corvus.Validator, body: bytes | str) -> bool:
    """``True`` only when ``body`` is JSON that meets the schema; ``False`` means "ask the authority"."""
    try:
        return bool(validator.is_valid_json(body))
    except (ValueError, corvus.SchemaEvaluationDepthError, corvus.PatternMatchLimitError):
        return False


def _walk(schema: Any, resolve: Resolve, *, root: bool, seen: set[str]) -> None:
    """Visit every subschema reachable from ``schema``; raises :class:`_OutsideSubset` at the first thing outside."""
    if isinstance(schema, bool):
        return
    if not isinstance(schema, dict):
        raise _OutsideSubset(schema)
    for keyword, value in schema.items():
        if keyword in _SUBSCHEMA:
            _walk(value, resolve, root=False, seen=seen)
        elif keyword in _SUBSCHEMA_LISTS:
            for item in _as_list(value):
                _walk(item, resolve, root=False, seen=seen)
        elif keyword in _SUBSCHEMA_MAPS:
            for item in _as_dict(value).values():
                _walk(item, resolve, root=False, seen=seen)
        elif keyword == "$ref":
            _reference(value, resolve, seen)
        elif keyword == "patternProperties":
            for pattern, item in _as_dict(value).items():
                _plain_pattern(pattern)
                _walk(item, resolve, root=False, seen=seen)
        elif keyword == "pattern":
            _plain_pattern(value)
        elif keyword in ("enum", "const"):
            _exact_values(value if keyword == "const" else _as_list(value))
        else:
            _scalar_keyword(keyword, value, root=root)


def _scalar_keyword(keyword: str, value: Any, *, root: bool) -> None:
    if keyword in _NUMBERS or keyword in _COUNTS:
        _exact_values([value])
    elif keyword == "multipleOf":
        if isinstance(value, bool) or not isinstance(value, int):
            raise _OutsideSubset(keyword)  # doubles: the engines round differently
        _exact_values([value])
    elif keyword == "$id":
        if not root:
            raise _OutsideSubset(keyword)
    elif keyword not in _INERT and not keyword.startswith("x-"):
        raise _OutsideSubset(keyword)


def _reference(target: Any, resolve: Resolve, seen: set[str]) -> None:
    """A local fragment is walked where it is defined (under ``$defs``); a shared schema once, by URI."""
    if not isinstance(target, str):
        raise _OutsideSubset(target)
    if target.startswith("#"):
        if target != "#" and not target.startswith("#/$defs/"):
            raise _OutsideSubset(target)  # anchors and pointers elsewhere: not worth proving
        return
    uri, _, fragment = target.partition("#")
    if fragment or "://" not in uri:
        raise _OutsideSubset(target)
    if uri in seen:
        return
    seen.add(uri)
    shared = resolve(uri)
    if shared is None:
        raise _OutsideSubset(target)
    _walk(shared, resolve, root=True, seen=seen)


def _plain_pattern(pattern: Any) -> None:
    if not isinstance(pattern, str) or not _PLAIN_PATTERN.fullmatch(pattern):
        raise _OutsideSubset(pattern)


def _exact_values(values: list[Any]) -> None:
    """Numbers anywhere in ``values`` must be ones a double holds exactly."""
    for value in values:
        if isinstance(value, float) and not -_EXACT <= value <= _EXACT:
            raise _OutsideSubset(value)
        if isinstance(value, int) and not isinstance(value, bool) and not -_EXACT <= value <= _EXACT:
            raise _OutsideSubset(value)
        if isinstance(value, dict):
            _exact_values(list(value.values()))
        elif isinstance(value, list):
            _exact_values(value)


def _as_list(value: Any) -> list[Any]:
    if not isinstance(value, list):
        raise _OutsideSubset(value)
    return value


def _as_dict(value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise _OutsideSubset(value)
    return value
