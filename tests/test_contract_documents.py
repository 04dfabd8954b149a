"""Contract documents, path templates, route matching and authoring from pydantic models."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import BaseModel, Field

from gateway.config import RouteSpec
from gateway.contracts.authoring import contract_from_models
from gateway.contracts.document import ContractDocumentError, contract_meta_schema, parse_contract
from gateway.contracts.paths import PathTemplate
from gateway.contracts.registry import ContractTable
from gateway.contracts.validation import compile_contract
from gateway.control.routes import RouteTable
from tests.conftest import contract


def test_defaults_fill_in_enforce_and_reject() -> None:
    spec = parse_contract(contract())
    assert spec.mode == "enforce"
    assert set(spec.failure_modes.values()) == {"reject"}
    assert spec.action("request_invalid") == "reject"
    assert parse_contract(contract(mode="shadow")).action("response_invalid") == "pass"


def test_every_problem_is_reported_at_once() -> None:
    with pytest.raises(ContractDocumentError) as info:
        parse_contract({"id": "bad id!", "route": 3, "operation": {"method": "GET"}})
    pointers = sorted(e["pointer"] for e in info.value.errors)
    assert pointers == ["/id", "/operation", "/route"]


def test_meta_schema_is_itself_valid_2020_12() -> None:
    from jsonschema import Draft202012Validator

    Draft202012Validator.check_schema(contract_meta_schema())


@pytest.mark.parametrize(
    ("template", "path", "matches"),
    [
        ("/tasks/{id}", "/tasks/42", True),
        ("/tasks/{id}", "/tasks/42/", True),
        ("/tasks/{id}", "/tasks", False),
        ("/tasks/{id}", "/tasks/1/2", False),
        ("/tasks/{id}/notes/{n}", "/tasks/a/notes/b", True),
        ("/", "/", True),
        ("/", "", True),
        ("/a.b", "/aXb", False),
    ],
)
def test_path_templates(template: str, path: str, matches: bool) -> None:
    assert PathTemplate(template).matches(path) is matches


def test_literal_paths_win_over_templates() -> None:
    by_id = compile_contract(parse_contract(contract(id="by-id", operation={"method": "GET", "path": "/t/{id}"})), 1)
    latest = compile_contract(
        parse_contract(contract(id="latest", operation={"method": "GET", "path": "/t/latest"})), 1
    )
    table = ContractTable([by_id, latest])
    assert table.find("agent", "GET", "/t/latest") is latest
    assert table.find("agent", "GET", "/t/7") is by_id
    assert table.find("agent", "POST", "/t/7") is None
    assert table.find("other", "GET", "/t/7") is None


def test_route_table_longest_prefix_on_segment_boundary() -> None:
    table = RouteTable(
        [
            RouteSpec(name="a", upstream="http://a"),
            RouteSpec(name="ab", upstream="http://ab", prefix="/a/b"),
            RouteSpec(name="root", upstream="http://r", prefix="/"),
        ]
    )
    assert table.match("/a/b/c") == (table.get("ab"), "/c")
    assert table.match("/a") == (table.get("a"), "/")
    assert table.match("/ab") == (table.get("root"), "/ab")


class Finding(BaseModel):
    claim: str = Field(min_length=1)
    source: str


class ResearchRequest(BaseModel):
    topic: str
    depth: int = Field(ge=1, le=5)


class ResearchResult(BaseModel):
    findings: list[Finding]


def test_contract_from_pydantic_models_registers_and_validates() -> None:
    document = contract_from_models(
        "researcher.research",
        route="researcher",
        method="post",
        path="/research",
        request=ResearchRequest,
        responses={200: ResearchResult},
        failure_modes={"response_invalid": "pass"},
    )
    compiled = compile_contract(parse_contract(document), 1)
    schema = compiled.response_schema(200)
    assert schema is not None
    assert schema.check({"findings": [{"claim": "c", "source": "s"}]}, 10) == ((), 0)
    violations, total = schema.check({"findings": [{"claim": "", "source": 1}]}, 10)
    assert total == 2
    assert sorted(v.pointer for v in violations) == ["/findings/0/claim", "/findings/0/source"]
    assert document["operation"]["method"] == "POST"
    assert compiled.spec.action("response_invalid") == "pass"
    assert compiled.request_body is not None
    request_violations: Any = compiled.request_body.check({"topic": "t", "depth": 9}, 10)
    assert [v.pointer for v in request_violations[0]] == ["/depth"]
