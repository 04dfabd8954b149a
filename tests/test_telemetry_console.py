"""What a deployed gateway prints: ``agent-gateway serve`` in a child process with ``OTEL_TRACES_EXPORTER=console``
and JSON logs, checked on the real stdout (the SDK's console exporter) and stderr (the access log)."""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path
from typing import Any

import aiohttp
import yaml

from gateway import __version__
from tests.conftest import Upstream, contract, eventually, free_port, replying
from tests.test_startup import BASE_ENV, CLI

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
ISO_UTC = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$")


def json_documents(text: str) -> list[Any]:
    """The console exporter writes one indented JSON document per span, back to back."""
    decoder, found, at = json.JSONDecoder(), [], 0
    while (at := text.find("{", at)) != -1:
        document, at = decoder.raw_decode(text, at)
        found.append(document)
    return found


async def serve(tmp_path: Path, upstream: Upstream) -> tuple[asyncio.subprocess.Process, str]:
    (tmp_path / "contracts").mkdir()
    (tmp_path / "contracts" / "tasks.json").write_text(json.dumps(contract()))
    upstream.handler = replying(b'{"result": "done"}')  # valid under the contract's 200 schema
    settings = {
        "listen": {"host": "127.0.0.1"}, "admin": {"port": free_port()}, "store": {"path": str(tmp_path / "gw.db")},
        "routes": [{"name": "agent", "upstream": upstream.url}], "contract_dirs": [str(tmp_path / "contracts")],
        "log_level": "DEBUG", "log_format": "json",
    }  # fmt: skip
    (tmp_path / "gateway.yaml").write_text(yaml.safe_dump(settings))
    port = free_port()
    env = {**BASE_ENV, "OTEL_TRACES_EXPORTER": "console", "OTEL_RESOURCE_ATTRIBUTES": "deployment.environment=ci"}
    process = await asyncio.create_subprocess_exec(
        *CLI, "serve", "--config", str(tmp_path / "gateway.yaml"), "--port", str(port),
        env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip

    async def listening() -> bool:
        if process.returncode is not None:
            assert process.stderr is not None
            raise AssertionError(f"serve exited: {(await process.stderr.read()).decode()}")
        _, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.close()
        return True

    await eventually(listening, within=60, ignoring=(OSError,), what="the data plane accepts connections")
    return process, f"http://127.0.0.1:{port}"


async def test_a_served_gateway_exports_conventional_spans_and_logs_json_lines(
    tmp_path: Path, upstream: Upstream, http: aiohttp.ClientSession
) -> None:
    process, url = await serve(tmp_path, upstream)
    try:
        headers = {"traceparent": f"00-{TRACE}-00f067aa0ba902b7-01", "X-Agent-Name": "planner", "X-Run-Id": "r-1"}
        async with http.post(f"{url}/agent/tasks", json={"task": "t", "priority": 1}, headers=headers) as ok:
            assert ok.status == 200
        async with http.post(f"{url}/agent/tasks", json={"task": ""}, headers=headers) as refused:
            assert refused.status == 422
    finally:
        process.terminate()  # a clean stop flushes the batch span processor
        out, err = await asyncio.wait_for(process.communicate(), timeout=60)  # a hang guard, not a measurement
    assert process.returncode == 0, err.decode()

    spans = {(s["kind"], s["attributes"].get("http.response.status_code")): s for s in json_documents(out.decode())}
    server = spans["SpanKind.SERVER", 200]
    assert server["name"] == "POST /agent/tasks"
    assert server["context"]["trace_id"] == f"0x{TRACE}"
    assert server["attributes"] == {
        "http.request.method": "POST", "url.path": "/agent/tasks", "url.scheme": "http",
        "network.protocol.version": "1.1", "http.route": "/agent/tasks", "http.response.status_code": 200,
        "agent_gateway.route": "agent", "gen_ai.agent.name": "agent", "agent_gateway.agent.source": "planner",
        "agent_gateway.run.id": "r-1", "agent_gateway.contract.id": "agent.tasks",
        "agent_gateway.contract.version": 1, "agent_gateway.contract.verdict": "valid",
    }  # fmt: skip
    resource = server["resource"]["attributes"]
    assert (resource["service.name"], resource["service.version"]) == ("agent-gateway", __version__)
    assert resource["deployment.environment"] == "ci"
    client = spans["SpanKind.CLIENT", 200]
    assert client["parent_id"] == server["context"]["span_id"]
    assert client["attributes"]["url.full"] == f"{upstream.url}/tasks"
    assert client["attributes"]["server.port"] == int(upstream.url.rsplit(":", 1)[1])
    assert "http.request.resend_count" not in client["attributes"]
    refusal = spans["SpanKind.SERVER", 422]
    assert refusal["attributes"]["error.type"] == "request_invalid"
    assert refusal["attributes"]["agent_gateway.contract.violations"] == 2  # minLength, and priority missing

    lines = [json.loads(line) for line in err.decode().splitlines() if '"agent_gateway.access"' in line]
    assert [(line["level"], line["http.response.status_code"]) for line in lines] == [("DEBUG", 200), ("INFO", 422)]
    for line, span in zip(lines, (server, refusal), strict=True):
        assert ISO_UTC.match(line["timestamp"]), line["timestamp"]
        assert (line["http.request.method"], line["url.path"]) == ("POST", "/agent/tasks")
        assert (f"0x{line['trace_id']}", f"0x{line['span_id']}") == (
            span["context"]["trace_id"], span["context"]["span_id"],
        )  # fmt: skip
        assert line["duration_ms"] > 0
    assert lines[1]["verdict"] == "request_invalid"
