"""Every admin endpoint, fed arbitrary JSON, answers with a 2xx or a 4xx problem document — never a 500."""

from __future__ import annotations

from typing import Any

import aiohttp
import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.admin.app import ENDPOINTS
from gateway.app import RunningGateway
from tests.conftest import TOKEN

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**40), 2**40) | st.floats(allow_nan=False) | st.text(max_size=12),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=10,
)
WRITES = [ep for ep in ENDPOINTS if ep.method in ("PUT", "POST")]
IDS = st.sampled_from(["agent.tasks", "x", "route:agent", "esc_0", "1"])


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(index=st.integers(0, len(WRITES) - 1), body=json_values, ident=IDS, raw=st.booleans())
async def test_admin_writes_never_fail_with_a_server_error(
    gateway: RunningGateway, http: aiohttp.ClientSession, index: int, body: Any, ident: str, raw: bool
) -> None:
    endpoint = WRITES[index]
    path = endpoint.path
    for param in ("{id}", "{name}", "{version}", "{command}"):
        path = path.replace(param, ident)
    data = orjson.dumps(body) if not raw else orjson.dumps(body)[: max(1, len(orjson.dumps(body)) // 2)]
    headers = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}
    async with http.request(endpoint.method, gateway.admin_url + path, data=data, headers=headers) as resp:
        text = await resp.text()
    assert resp.status < 500, (endpoint.method, path, body, text)
    if resp.status >= 400:
        assert resp.content_type == "application/problem+json", text
