"""The hot-path engines (jsonschema-rs, and corvus-json-schema-rs on raw bytes) and the reference engine (Python
jsonschema) agree on draft 2020-12.

Cases come from the official JSON-Schema-Test-Suite (vendored under ``tests/data``; MIT licence there).
Remote references (``http://localhost:1234/...``) are served from the suite's ``remotes`` folder through
in-memory registries for both engines, as the gateway serves shared schemas: nothing is fetched.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

import corvus_json_schema_rs
import jsonschema_rs
import pytest
import referencing
from jsonschema import Draft202012Validator
from referencing.jsonschema import DRAFT202012

from gateway.contracts.registry import SchemaResources
from gateway.contracts.validation import CompiledSchema

SUITE = Path(__file__).parent / "data" / "json-schema-test-suite"
REMOTE_BASE = "http://localhost:1234/"
# Python jsonschema does not honour a custom metaschema's $vocabulary; jsonschema-rs does, as the suite expects.
REFERENCE_ENGINE_GAPS = {("vocabulary.json", "no validation: invalid number, but it still validates")}


@cache
def remotes() -> tuple[tuple[str, Any], ...]:
    root = SUITE / "remotes"
    return tuple(
        (REMOTE_BASE + path.relative_to(root).as_posix(), json.loads(path.read_text()))
        for path in sorted(root.rglob("*.json"))
    )


@cache
def registries() -> tuple[referencing.Registry[Any], jsonschema_rs.Registry]:
    python = referencing.Registry().with_resources(
        (uri, DRAFT202012.create_resource(schema)) for uri, schema in remotes()
    )
    return python, jsonschema_rs.Registry(list(remotes()))


def suite_files() -> list[Path]:
    return sorted((SUITE / "draft2020-12").glob("*.json"))


@pytest.mark.parametrize("path", suite_files(), ids=lambda p: p.stem)
def test_engines_agree_with_each_other_and_the_suite(path: Path) -> None:
    python_registry, rust_registry = registries()
    checked = 0
    for case in json.loads(path.read_text()):
        fast = jsonschema_rs.Draft202012Validator(case["schema"], registry=rust_registry, offline=True)
        reference = Draft202012Validator(case["schema"], registry=python_registry)
        on_bytes = corvus_json_schema_rs.compile(case["schema"], resolve_document=dict(remotes()).get)
        for test in case["tests"]:
            verdicts = (fast.is_valid(test["data"]), reference.is_valid(test["data"]))
            label = f"{case['description']} / {test['description']}"
            assert verdicts[0] == test["valid"], f"jsonschema-rs differs from the suite: {label}"
            text = json.dumps(test["data"])
            assert on_bytes.is_valid_json(text) == test["valid"], f"corvus-json-schema-rs differs: {label}"
            if (path.name, test["description"]) not in REFERENCE_ENGINE_GAPS:
                assert verdicts[0] == verdicts[1], f"engines disagree: {label}: rs={verdicts[0]} py={verdicts[1]}"
            checked += 1
    assert checked > 0


def test_the_whole_suite_was_run() -> None:
    cases = sum(len(case["tests"]) for path in suite_files() for case in json.loads(path.read_text()))
    assert len(suite_files()) == 46
    assert cases > 1200


def test_shared_schema_resources_resolve_identically_in_both_engines() -> None:
    shared = {
        "$id": "https://example.test/finding.json",
        "type": "object",
        "required": ["claim"],
        "properties": {"claim": {"type": "string"}, "source": {"type": "string"}},
    }
    resources = SchemaResources([shared])
    schema = {"type": "array", "items": {"$ref": "https://example.test/finding.json"}}
    fast = CompiledSchema(schema, resources.for_rust)
    reference = Draft202012Validator(schema, registry=resources.registry)
    for instance in ([{"claim": "x"}], [{"claim": 1}], [{}], [], [{"claim": "y", "source": None}]):
        violations, total = fast.check(instance, 10)
        assert (total == 0) == reference.is_valid(instance)
        assert sorted(v.pointer for v in violations) == sorted(
            "".join(f"/{p}" for p in e.absolute_path) for e in reference.iter_errors(instance)
        )
