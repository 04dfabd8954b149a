"""Log lines as a person or a log pipeline reads them: the real handler ``configure_logging`` installs, writing to
the real stderr, for an in-process gateway answering real requests."""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterator

import aiohttp
import pytest

from gateway.app import RunningGateway
from gateway.observability.logs import configure_logging

ISO_UTC = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z"


@pytest.fixture
def restore_logging() -> Iterator[None]:
    """``configure_logging`` replaces the root handlers; pytest's own capture handlers come back afterwards."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


@pytest.mark.usefixtures("restore_logging")
async def test_text_lines_keep_the_trace_id_and_the_duration(
    gateway: RunningGateway, http: aiohttp.ClientSession, capsys: pytest.CaptureFixture[str]
) -> None:
    configure_logging("DEBUG", "text")
    async with http.get(f"{gateway.data_url}/agent/x", headers={"X-Run-Id": "text-run"}) as resp:
        assert resp.status == 200
    async with http.get(f"{gateway.data_url}/nowhere") as missing:
        trace_id = (await missing.json(content_type=None))["trace_id"]
    lines = [line for line in capsys.readouterr().err.splitlines() if " agent_gateway.access " in line]
    assert len(lines) == 2, lines
    success = rf"^{ISO_UTC} DEBUG agent_gateway\.access GET /agent/x 200 unchecked trace_id=[0-9a-f]{{32}} "
    assert re.match(rf"{success}run_id=text-run duration_ms=\d+\.\d+$", lines[0]), lines[0]
    assert re.match(rf"^{ISO_UTC} INFO agent_gateway\.access GET /nowhere 404 unchecked trace_id={trace_id} ", lines[1])
    assert "duration_ms=" in lines[1]


@pytest.mark.usefixtures("restore_logging")
async def test_json_lines_carry_the_http_fields_and_an_iso_timestamp(
    gateway: RunningGateway, http: aiohttp.ClientSession, capsys: pytest.CaptureFixture[str]
) -> None:
    configure_logging("INFO", "json")  # the shipped level: a success is not logged, a refusal is
    async with http.get(f"{gateway.data_url}/agent/x") as ok:
        assert ok.status == 200
    async with http.get(f"{gateway.data_url}/nowhere", headers={"X-Run-Id": "json-run"}) as missing:
        trace_id = (await missing.json(content_type=None))["trace_id"]
    (line,) = [json.loads(text) for text in capsys.readouterr().err.splitlines() if "agent_gateway.access" in text]
    assert re.fullmatch(ISO_UTC, line["timestamp"])
    assert {k: line[k] for k in ("level", "http.request.method", "url.path", "http.response.status_code")} == {
        "level": "INFO", "http.request.method": "GET", "url.path": "/nowhere", "http.response.status_code": 404,
    }  # fmt: skip
    assert (line["trace_id"], line["run_id"], line["verdict"]) == (trace_id, "json-run", "unchecked")
    assert re.fullmatch("[0-9a-f]{16}", line["span_id"])
    assert line["duration_ms"] > 0
