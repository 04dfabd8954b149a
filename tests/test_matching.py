"""Matching a request to its contract: the indexed table answers exactly as the linear scan it replaced.

The oracle below is the matcher as it was (``ContractTable.find`` looping over regular expressions sorted by
specificity); hypothesis draws template sets with parameters, literal/template overlaps, trailing slashes, empty
segments, escapes, several routes and methods and JSON-RPC contracts, and paths that hit them or nearly do.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from typing import Any

from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from gateway.contracts.document import parse_contract
from gateway.contracts.matcher import path_segments
from gateway.contracts.registry import ContractTable
from gateway.contracts.validation import CompiledContract, compile_contract
from tests.conftest import contract

ROUTES = ("r1", "r2")
METHODS = ("GET", "POST")
LITERALS = ("a", "b", "x", "aA", "a%41")
PARAMS = ("{p}", "{q}")
RPC = (None, ("m", None), ("tools/call", None), ("tools/call", "t1"), ("tools/call", "t2"))


def compiled(doc_id: str, route: str, method: str, path: str, rpc: tuple[str, str | None] | None) -> CompiledContract:
    """A contract without schemas: matching reads only its operation (compiling nothing keeps hypothesis fast)."""
    document = contract(id=doc_id, route=route, operation={"method": method, "path": path})
    del document["request"], document["responses"]
    if rpc is not None:
        document["jsonrpc"] = {"method": rpc[0], **({"tool": rpc[1]} if rpc[1] else {})}
    return CompiledContract(parse_contract(document), 1, None, None, None, {})


# -- the oracle: the linear matcher this replaced, verbatim in behaviour ---------------------------------------


def _pattern(template: str) -> re.Pattern[str]:
    segments = [seg for seg in template.split("/") if seg]
    param = re.compile(r"^\{[A-Za-z_][A-Za-z0-9_]*\}$")
    return re.compile("^/" + "/".join("[^/]+" if param.match(s) else re.escape(s) for s in segments) + "/?$")


def _specificity(template: str) -> tuple[int, int]:
    segments = [seg for seg in template.split("/") if seg]
    return -sum(1 for s in segments if not s.startswith("{")), -len(segments)


def oracle_find(contracts: Sequence[CompiledContract], route: str, method: str, path: str) -> CompiledContract | None:
    entries = [
        c for c in contracts if c.spec.rpc is None and (c.spec.route, c.spec.operation.method) == (route, method)
    ]
    for c in sorted(entries, key=lambda c: _specificity(c.spec.operation.path)):
        if _pattern(c.spec.operation.path).match(path or "/"):
            return c
    return None


def _oracle_groups(contracts: Sequence[CompiledContract], route: str, method: str) -> list[tuple[str, dict[Any, Any]]]:
    groups: dict[str, dict[Any, CompiledContract]] = {}
    for c in contracts:
        spec = c.spec
        if spec.rpc is not None and (spec.route, spec.operation.method) == (route, method):
            groups.setdefault(spec.operation.path, {})[(spec.rpc.method, spec.rpc.tool)] = c
    return sorted(groups.items(), key=lambda item: _specificity(item[0]))


def oracle_find_rpc(
    contracts: Sequence[CompiledContract], route: str, method: str, path: str, rpc: str, tool: str | None
) -> CompiledContract | None:
    for template, by_method in _oracle_groups(contracts, route, method):
        if _pattern(template).match(path or "/"):
            return (by_method.get((rpc, tool)) if tool is not None else None) or by_method.get((rpc, None))
    return None


def oracle_binds_rpc(contracts: Sequence[CompiledContract], route: str, method: str, path: str) -> bool:
    return any(_pattern(t).match(path or "/") for t, _ in _oracle_groups(contracts, route, method))


# -- strategies ------------------------------------------------------------------------------------------------

segment = st.sampled_from(LITERALS + PARAMS)
templates = st.builds(
    lambda segs, slash, double: ("//" if double else "/") + "/".join(segs) + ("/" if slash and segs else ""),
    st.lists(segment, max_size=3),
    st.booleans(),
    st.booleans(),
)
operations = st.tuples(st.sampled_from(ROUTES), st.sampled_from(METHODS), templates, st.sampled_from(RPC))
path_parts = st.sampled_from((*LITERALS, "1", "", "x\n", "\n"))
paths = st.one_of(
    st.builds(
        lambda segs, slash: "/" + "/".join(segs) + ("/" if slash else ""),
        st.lists(path_parts, max_size=4),
        st.booleans(),
    ),
    st.sampled_from(("", "/", "//", "a", "/\n", "/a/\n")),
)
queries = st.tuples(st.sampled_from(ROUTES), st.sampled_from(METHODS), paths, st.sampled_from(RPC[1:]))


def table_of(operations: Iterable[tuple[str, str, str, Any]]) -> list[CompiledContract]:
    return [compiled(f"c{i}", *op) for i, op in enumerate(operations)]


def assert_agrees(
    table: ContractTable, contracts: Sequence[CompiledContract], query: tuple[str, str, str, Any]
) -> None:
    route, method, path, (rpc, tool) = query
    assert table.find(route, method, path) is oracle_find(contracts, route, method, path), path
    assert table.binds_rpc(route, method, path) is oracle_binds_rpc(contracts, route, method, path), path
    found = table.find_rpc(route, method, path, rpc, tool)
    assert found is oracle_find_rpc(contracts, route, method, path, rpc, tool), path


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(operations, max_size=12), st.lists(queries, min_size=1, max_size=12))
def test_the_index_answers_as_the_linear_scan_did(ops: list[Any], asked: list[Any]) -> None:
    contracts = table_of(ops)
    table = ContractTable(contracts)
    for query in asked:
        assert_agrees(table, contracts, query)


def _conflict_free(contracts: Iterable[CompiledContract]) -> bool:
    """No two contracts on one (route, method, path, RPC method and tool): the registry refuses those."""
    keys = [
        (
            c.spec.route,
            c.spec.operation.method,
            c.spec.operation.path,
            c.spec.rpc and (c.spec.rpc.method, c.spec.rpc.tool),
        )
        for c in contracts
        if c.spec.rpc is not None
    ]
    return len(keys) == len(set(keys))


changes = st.lists(st.tuples(st.integers(0, 7), st.one_of(st.none(), operations)), min_size=1, max_size=10)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(changes, st.lists(queries, min_size=1, max_size=8))
def test_a_revised_table_answers_as_one_built_whole(steps: list[Any], asked: list[Any]) -> None:
    """Each step replaces, adds (``operation``) or removes (``None``) one id; the revised table must answer as
    a table built from the resulting contracts in force, in the order a dict keeps them (as the registry does)."""
    table, active = ContractTable(), {}
    for n, (slot, op) in enumerate(steps):
        doc_id = f"c{slot}"
        if op is None:
            table = table.revised([], [doc_id])
            active.pop(doc_id, None)
        else:
            active[doc_id] = compiled(doc_id, *op)
            assume(_conflict_free(active.values()))
            table = table.revised([active[doc_id]], [])
        assert [c.id for c in table] == list(active), n
    for query in asked:
        assert_agrees(table, list(active.values()), query)


def test_a_revised_table_leaves_the_one_in_force_as_it_was() -> None:
    first = compiled("first", "r1", "POST", "/tasks/{id}", None)
    table = ContractTable([first])
    revised = table.revised([compiled("latest", "r1", "POST", "/tasks/latest", None)], ["first"])
    assert table.find("r1", "POST", "/tasks/latest") is first
    assert revised.find("r1", "POST", "/tasks/1") is None
    assert revised.find("r1", "POST", "/tasks/latest").id == "latest"  # type: ignore[union-attr]


def test_literal_segments_win_then_more_segments_then_the_first_in_force() -> None:
    contracts = table_of(
        [
            ("r1", "GET", "/{a}/{b}", None),
            ("r1", "GET", "/x/{b}", None),
            ("r1", "GET", "/{a}/x", None),
            ("r1", "GET", "/x/x", None),
        ]
    )
    table = ContractTable(contracts)
    assert table.find("r1", "GET", "/x/x").id == "c3"  # type: ignore[union-attr]
    assert table.find("r1", "GET", "/x/y").id == "c1"  # type: ignore[union-attr]
    assert table.find("r1", "GET", "/y/x").id == "c2"  # type: ignore[union-attr]
    assert table.find("r1", "GET", "/y/y/").id == "c0"  # type: ignore[union-attr]
    assert table.find("r1", "GET", "/y/y/z") is None
    assert table.find("r1", "GET", "/y//y") is None


def test_a_path_ending_in_a_newline_matches_as_the_regular_expression_did() -> None:
    """``$`` matches before a final newline: ``/tasks/latest\\n`` went to the literal contract, and still does."""
    contracts = table_of([("r1", "GET", "/tasks/{id}", None), ("r1", "GET", "/tasks/latest", None)])
    assert ContractTable(contracts).find("r1", "GET", "/tasks/latest\n") is contracts[1]
    assert oracle_find(contracts, "r1", "GET", "/tasks/latest\n") is contracts[1]


def test_many_tools_on_one_path_each_find_their_own_contract() -> None:
    contracts = [compiled(f"tool{i}", "r1", "POST", "/mcp", ("tools/call", f"t{i}")) for i in range(300)]
    table = ContractTable(contracts[:150]).revised(contracts[150:], ["tool7"])
    assert table.find_rpc("r1", "POST", "/mcp", "tools/call", "t299") is contracts[299]
    assert table.find_rpc("r1", "POST", "/mcp/", "tools/call", "t0") is contracts[0]
    assert table.find_rpc("r1", "POST", "/mcp", "tools/call", "t7") is None
    assert table.binds_rpc("r1", "POST", "/mcp")
    assert not table.binds_rpc("r1", "POST", "/mcp/x")


def test_path_segments_are_what_a_template_must_match() -> None:
    assert path_segments("") == path_segments("/") == path_segments("//") == []
    assert path_segments("/a/b/") == ["a", "b"]
    assert path_segments("/a//b") is None
    assert path_segments("a") is None
    assert path_segments("///") is None


def test_a_compiled_contract_is_matched_like_any_other() -> None:
    """The table holds real compiled contracts in the product; matching never reads their validators."""
    real = compile_contract(parse_contract(contract(id="real", operation={"method": "POST", "path": "/t/{id}"})), 3)
    assert ContractTable([real]).find("agent", "POST", "/t/9") is real
