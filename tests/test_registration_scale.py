"""Registration, start-up and reloads cost what changed, not what is in force (issue 12).

Counted, not timed: how many path templates a registration makes, how many documents are checked against the
meta-schema, how many store round trips a start-up or a reload takes. Real SQLite stores, real compiles.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest

import gateway.contracts.checked
import gateway.contracts.document
from gateway.contracts import paths
from gateway.contracts.registry import BindingConflict, ContractRegistry
from gateway.store.sqlite import SQLiteStore
from tests.conftest import contract

IN_FORCE = 40


def document(i: int, **overrides: Any) -> dict[str, Any]:
    return contract(id=f"c{i}", operation={"method": "POST", "path": f"/items{i}/{{id}}"}, **overrides)


@pytest.fixture
def calls(monkeypatch: pytest.MonkeyPatch) -> Counter[str]:
    """Counts meta-schema checks and path templates made, the real functions still doing the work."""
    counted: Counter[str] = Counter()

    def counting(name: str, real: Callable[..., Any]) -> Callable[..., Any]:
        def spy(*args: Any, **kwargs: Any) -> Any:
            counted[name] += 1
            return real(*args, **kwargs)

        return spy

    check = counting("meta-schema", gateway.contracts.document.check_contract)
    monkeypatch.setattr(gateway.contracts.document, "check_contract", check)
    real_init = paths.PathTemplate.__init__
    monkeypatch.setattr(paths.PathTemplate, "__init__", counting("template", real_init))
    paths.path_template.cache_clear()
    return counted


@pytest.fixture
async def registry() -> ContractRegistry:
    registry = ContractRegistry(SQLiteStore())
    await registry.load()
    await registry.register_many([document(i) for i in range(IN_FORCE)])
    return registry


async def test_registering_one_more_contract_makes_no_template_for_those_in_force(
    registry: ContractRegistry, calls: Counter[str]
) -> None:
    stored = await registry.register(document(IN_FORCE))
    assert stored.version == 1
    assert calls["template"] <= 1  # the new one's (the old table and bindings made one per contract in force)
    assert calls["meta-schema"] == 1
    assert registry.table.find("agent", "POST", f"/items{IN_FORCE}/x").id == f"c{IN_FORCE}"  # type: ignore[union-attr]
    assert registry.table.find("agent", "POST", "/items0/x").id == "c0"  # type: ignore[union-attr]


async def test_content_checked_once_is_not_checked_again(registry: ContractRegistry, calls: Counter[str]) -> None:
    """Rolling an id back to content it had before (a re-push of old files) skips the meta-schema check but still
    makes a version, because it differs from the one in force."""
    await registry.register(document(0, mode="shadow"))
    rolled_back = await registry.register(document(0))
    assert rolled_back.version == 3
    assert calls["meta-schema"] == 1


async def test_an_unchanged_document_is_neither_parsed_nor_stored_again(
    registry: ContractRegistry, calls: Counter[str]
) -> None:
    stored = await registry.register_many([document(i) for i in range(IN_FORCE)])
    assert {entry.version for entry in stored} == {1}
    assert calls["meta-schema"] == 0


async def test_start_up_reads_every_contract_in_one_query_and_does_not_check_them_again(
    calls: Counter[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    store = SQLiteStore()
    await ContractRegistry(store).register_many([document(i) for i in range(IN_FORCE)])
    calls.clear()
    reads: Counter[str] = Counter()
    for name in ("get_version", "active_documents", "list_heads"):
        real = getattr(store, name)

        async def counted(*args: Any, _real: Any = real, _name: str = name) -> Any:
            reads[_name] += 1
            return await _real(*args)

        monkeypatch.setattr(store, name, counted)
    restarted = ContractRegistry(store)
    await restarted.load()
    assert len(restarted.table) == IN_FORCE
    assert reads == {"active_documents": 1}
    assert calls["meta-schema"] == 0


async def test_a_reload_fetches_only_what_another_gateway_changed(
    registry: ContractRegistry, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = registry._store
    other = ContractRegistry(store)
    await other.load()
    await registry.register(document(1, mode="shadow"))
    await registry.register(document(IN_FORCE))
    await registry.deactivate("c2")
    fetched: list[tuple[str, int]] = []
    real = store.get_version

    async def counted(kind: str, doc_id: str, version: int) -> Any:
        fetched.append((doc_id, version))
        return await real(kind, doc_id, version)

    monkeypatch.setattr(store, "get_version", counted)
    before = other.table
    await other.load()
    assert sorted(fetched) == [("c1", 2), (f"c{IN_FORCE}", 1)]
    assert other.table.get("c1").spec.mode == "shadow"  # type: ignore[union-attr]
    assert other.table.get("c2") is None
    assert other.table.get(f"c{IN_FORCE}") is not None
    assert before.get("c2") is not None  # the table that was in force is left as it was
    assert other.table.get("c3") is before.get("c3")  # unchanged contracts are not compiled again


async def test_two_gateways_that_bound_one_operation_at_once_both_keep_the_first_registered() -> None:
    """Each gateway accepted its own contract; on reload each finds the other's overlapping one, and the change
    falls back to loading everything, which keeps the contract registered first on both."""
    store = SQLiteStore()
    first, second = ContractRegistry(store), ContractRegistry(store)
    await first.load()
    await second.load()
    await first.register(document(0))
    await second.register(contract(id="late", operation={"method": "POST", "path": "/items0/{other}"}))
    with pytest.raises(BindingConflict):
        await first.register(contract(id="late", operation={"method": "POST", "path": "/items0/{x}"}))
    await first.load()
    await second.load()
    assert [c.id for c in first.table] == [c.id for c in second.table] == ["c0"]
    assert second.active_version("late") is None


async def test_a_refused_registration_leaves_the_table_in_force(registry: ContractRegistry) -> None:
    before = registry.table
    with pytest.raises(BindingConflict) as refused:
        await registry.register_many([document(IN_FORCE), contract(id="clash", operation=document(3)["operation"])])
    assert "'c3' version 1" in str(refused.value)
    assert registry.table is before
    assert registry.table.get(f"c{IN_FORCE}") is None
    assert "clash" not in {head.id for head in await registry.heads()}
