"""One request cannot stall every other one: big payload checks and big registrations run off the event loop.

Ordering is proven by events, never by timings: a probe around the real check (or the real contract parse)
says when the heavy work has started; a small request issued after that must complete before the heavy one
does. When the heavy work runs on the loop, the test only resumes once it is over, so the order flips.
"""

from __future__ import annotations

import asyncio
import io
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import orjson
import pytest

from gateway.admin.client import AdminClient
from gateway.app import RunningGateway
from gateway.contracts import registry as contract_registry
from gateway.contracts import validation
from gateway.contracts.validation import CompiledSchema
from tests.conftest import TOKEN, Upstream, contract, gateway_config

STRINGS = {"type": "object", "properties": {"items": {"type": "array", "items": {"type": "string"}}}}


def strings_contract() -> dict[str, Any]:
    return contract(request={"body": STRINGS}, responses={"200": STRINGS})


HOLD_LIMIT = 10.0
"""Seconds a held check waits for its release: a deadlock breaker for code that checks on the loop (which
the test then reports as a failure), never a timing the passing case depends on."""


@dataclass
class Held:
    """The first call of a real function, held at its start until the test releases it."""

    started: asyncio.Event = field(default_factory=asyncio.Event)
    release: threading.Event = field(default_factory=threading.Event)
    released: list[bool] = field(default_factory=list)
    calls: list[Any] = field(default_factory=list)
    """``[True]`` once the held call went on because the test released it while the event loop kept running."""


@pytest.fixture
def hold(monkeypatch: pytest.MonkeyPatch) -> Callable[[Any, str], Held]:
    """``hold(owner, name)``: hold the first call of ``owner.name`` until ``release`` is set. Off the loop,
    the call waits in its worker thread while the loop serves others; on the loop, nothing else can run."""

    def install(owner: Any, name: str) -> Held:
        held, original, loop = Held(), getattr(owner, name), asyncio.get_running_loop()

        def wrapper(*args: Any, **kwargs: Any) -> Any:
            if not held.calls:
                held.calls.append(args)
                loop.call_soon_threadsafe(held.started.set)
                held.released.append(held.release.wait(HOLD_LIMIT))
            return original(*args, **kwargs)

        monkeypatch.setattr(owner, name, wrapper)
        return held

    return install


async def first_of(task: asyncio.Task[Any], event: asyncio.Event) -> None:
    """Until ``event`` is set, or ``task`` ended first (then the assertions that follow fail)."""
    waiter = asyncio.create_task(event.wait())
    await asyncio.wait([task, waiter], return_when=asyncio.FIRST_COMPLETED)
    waiter.cancel()


async def test_violation_search_stops_after_the_cap_and_says_more_than_n(
    make_gateway: Any, upstream: Upstream, http: aiohttp.ClientSession
) -> None:
    """50k failing items used to be listed in full before the cap applied (400k took 30 s on the loop)."""
    gw = await make_gateway(gateway_config([{"name": "agent", "upstream": upstream.url}], limits={"max_violations": 5}))
    async with AdminClient(gw.admin_url, TOKEN) as admin:
        await admin.request("PUT", "/contracts/agent.tasks", body=strings_contract())
    async with http.post(gw.data_url + "/agent/tasks", json={"items": [0] * 50_000}) as resp:
        assert resp.status == 422
        problem = await resp.json(content_type=None)
    assert [v["pointer"] for v in problem["violations"]] == [f"/items/{i}" for i in range(5)]
    assert problem["violation_count"] == 6  # max_violations + 1: "more than 5"
    assert problem["violations_truncated"] is True
    assert upstream.seen == []


def test_a_count_up_to_the_cap_is_exact_and_worded_by_the_fast_engine() -> None:
    schema = CompiledSchema(STRINGS)
    violations, total = schema.check({"items": [0, "a", 1]}, 2)
    assert total == 2
    assert [v.message for v in violations] == ['0 is not of type "string"', '1 is not of type "string"']
    assert schema.check({"items": [0, 1, 2]}, 2)[1] == 3
    assert schema.check({"items": ["a"]}, 2) == validation.NO_VIOLATIONS


async def test_a_small_request_answers_while_a_big_body_is_being_checked(
    gateway: RunningGateway,
    admin: AdminClient,
    upstream: Upstream,
    http: aiohttp.ClientSession,
    hold: Callable[[Any, str], Held],
) -> None:
    """The body the issue used (400k violating items): its check is held at its start until a small request
    sent after it has been answered. It used to run on the loop, where the small request could not start."""
    await admin.request("PUT", "/contracts/agent.tasks", body=strings_contract())
    big_body = orjson.dumps({"items": [0] * 400_000})
    assert len(big_body) >= gateway.state.config.limits.offload_bytes
    finished: list[str] = []
    check = hold(CompiledSchema, "check")

    async def send(name: str, path: str, body: bytes) -> int:
        headers = {"Content-Type": "application/json"}
        async with http.post(gateway.data_url + path, data=io.BytesIO(body), headers=headers) as resp:
            await resp.read()
        finished.append(name)
        return resp.status

    big = asyncio.create_task(send("big", "/agent/tasks", big_body))
    await first_of(big, check.started)
    small = await send("small", "/agent/ping", b"{}")
    check.release.set()
    assert await big == 422
    assert small == 200
    assert check.released == [True]
    assert finished == ["small", "big"]
    assert [seen.path for seen in upstream.seen] == ["/ping"]


def huge_contract(properties: int) -> dict[str, Any]:
    """About 65 bytes a property: 20k properties make the 1.3 MiB schema that stalled the data plane."""
    props = {f"field_{i:05d}": {"type": "string", "maxLength": 100, "description": "x" * 16} for i in range(properties)}
    schema = {"type": "object", "properties": props, "additionalProperties": False}
    return contract(id="huge", operation={"method": "POST", "path": "/huge"}, request={"body": schema})


async def test_a_data_plane_request_answers_while_a_huge_contract_registers(
    gateway: RunningGateway,
    admin: AdminClient,
    upstream: Upstream,
    http: aiohttp.ClientSession,
    hold: Callable[[Any, str], Held],
) -> None:
    """Registering the huge contract is held at the start of its check until a data-plane request issued after
    the registration began has been answered through the old table."""
    await admin.request("PUT", "/contracts/agent.tasks", body=strings_contract())
    finished: list[str] = []
    parse = hold(contract_registry, "parse_contract")
    document = io.BytesIO(orjson.dumps(huge_contract(5_000)))
    headers = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}

    async def register() -> None:
        async with http.put(f"{gateway.admin_url}/contracts/huge", data=document, headers=headers) as resp:
            assert resp.status == 201, await resp.text()
        finished.append("registration")

    registration = asyncio.create_task(register())
    await first_of(registration, parse.started)
    async with http.post(gateway.data_url + "/agent/tasks", json={"items": ["a"]}) as resp:
        assert resp.status == 200
    finished.append("request")
    parse.release.set()
    await registration
    assert parse.released == [True]
    assert finished == ["request", "registration"]
    assert gateway.state.contracts.table.get("huge") is not None
