"""The access log is fast by default: successes at DEBUG (off at the shipped INFO level), every failure shown."""

from __future__ import annotations

import logging

import aiohttp
import pytest

from gateway.admin.client import AdminClient
from gateway.app import RunningGateway
from gateway.observability.logs import ACCESS_LOGGER
from tests.conftest import contract


async def test_successes_log_at_debug_and_failures_at_info_or_above(
    gateway: RunningGateway, admin: AdminClient, http: aiohttp.ClientSession, caplog: pytest.LogCaptureFixture
) -> None:
    await admin.request("PUT", "/contracts/agent.tasks", body=contract(responses={}))
    with caplog.at_level(logging.DEBUG, logger=ACCESS_LOGGER):
        async with http.post(f"{gateway.data_url}/agent/tasks", json={"task": "t", "priority": 1}) as ok:
            assert ok.status == 200
        async with http.post(f"{gateway.data_url}/agent/tasks", json={"task": ""}) as refused:
            assert refused.status == 422
        async with http.get(f"{gateway.data_url}/nowhere") as missing:
            assert missing.status == 404
    levels = {
        record.getMessage().split()[2]: record.levelno for record in caplog.records if record.name == ACCESS_LOGGER
    }
    assert levels == {"200": logging.DEBUG, "422": logging.INFO, "404": logging.INFO}
