"""Review: a contract whose path template no request can ever match is a contract that is never enforced.

Contracts are matched on the path as the agent reads it: fully decoded, each segment's ``;parameters`` removed,
dot-segments resolved (``gateway/dataplane/target.py``). A template written in any other spelling — an escape
(``/files/my%20doc``), a parameter (``/plan;v=1``), a dot-segment (``/a/./b``) — registered fine and then
matched nothing, so the very requests its author meant to check reached the agent unchecked. (The index agrees
with the reference matcher on adversarial spellings, long paths and many parameters: what was wrong is what
registration accepted.)
"""

from __future__ import annotations

import aiohttp
import pytest

from gateway.admin.client import AdminAPIError, AdminClient
from gateway.app import RunningGateway
from tests.conftest import Upstream, contract

UNMATCHABLE = [
    ("/files/my%20doc", "/agent/files/my%20doc"),
    ("/pl%61n", "/agent/plan"),
    ("/plan;v=1", "/agent/plan;v=1"),
    ("/a/./b", "/agent/a/./b"),
    ("/a/../b", "/agent/b"),
]


@pytest.mark.parametrize(("template", "request_path"), UNMATCHABLE)
async def test_a_template_no_request_path_can_match_is_refused_at_registration(
    gateway: RunningGateway, upstream: Upstream, admin: AdminClient, http: aiohttp.ClientSession,
    template: str, request_path: str,
) -> None:  # fmt: skip
    document = contract(operation={"method": "POST", "path": template})
    with pytest.raises(AdminAPIError) as refused:
        await admin.request("PUT", "/contracts/agent.tasks", body=document)
    assert refused.value.status == 400
    assert any(error["pointer"] == "/operation/path" for error in refused.value.problem["errors"])
    async with http.post(f"{gateway.data_url}{request_path}", json={"task": ""}) as resp:  # unchecked: no contract
        assert resp.status == 200


async def test_spellings_that_do_match_are_still_accepted(
    gateway: RunningGateway, upstream: Upstream, admin: AdminClient, http: aiohttp.ClientSession
) -> None:
    """A literal ``%`` that is no escape, ``~``, non-ASCII: each matches the request its author meant."""
    for template, request_path in (("/rate/100%", "/agent/rate/100%25"), ("/~me/é", "/agent/%7Eme/%C3%A9")):
        await admin.request(
            "PUT", "/contracts/agent.tasks", body=contract(operation={"method": "POST", "path": template})
        )
        async with http.post(f"{gateway.data_url}{request_path}", json={"task": ""}) as resp:
            assert resp.status == 422, template
