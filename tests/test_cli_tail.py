"""``runs tail`` as a person runs it (the real command in a subprocess) against a live gateway: new handoffs as
they happen, ``--run`` and ``--json``, a dropped admin connection reconnected without losing what happened while
it was down, and Ctrl-C ending it quietly with exit status 0."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from collections.abc import AsyncIterator

import aiohttp
import pytest

from gateway.app import RunningGateway
from gateway.headers import RUN, STEP
from tests.conftest import TOKEN, eventually


class CuttableProxy:
    """A loopback TCP relay to the admin listener that can drop every connection and refuse new ones."""

    def __init__(self, port: int) -> None:
        self.port, self.refusing = port, False
        self.writers: set[asyncio.StreamWriter] = set()

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except ConnectionError:
            pass
        finally:
            writer.close()

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.refusing:
            writer.close()
            return
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.port)
        self.writers |= {writer, up_writer}
        await asyncio.gather(self._pipe(reader, up_writer), self._pipe(up_reader, writer))

    def cut(self) -> None:
        self.refusing = True
        for writer in self.writers:
            writer.transport.abort()
        self.writers.clear()


@pytest.fixture
async def proxy(gateway: RunningGateway) -> AsyncIterator[tuple[CuttableProxy, str]]:
    relay = CuttableProxy(gateway.admin_port)
    server = await asyncio.start_server(relay.handle, "127.0.0.1", 0)
    async with server:
        yield relay, f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
        relay.cut()


class Tailing:
    """``runs tail ...`` running as a subprocess, with the lines it printed collected as they come."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        assert process.stdout is not None
        self.process, self.lines = process, list[str]()
        self.reading = asyncio.ensure_future(self._read(process.stdout))

    @classmethod
    async def start(cls, *args: str) -> Tailing:
        return cls(await asyncio.create_subprocess_exec(
            sys.executable, "-m", "gateway.cli", "runs", "tail", *args,
            env={**os.environ, "AGENT_GATEWAY_ADMIN_TOKEN": TOKEN},
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        ))  # fmt: skip

    async def _read(self, stream: asyncio.StreamReader) -> None:
        while line := await stream.readline():
            self.lines.append(line.decode().rstrip("\n"))

    def steps(self) -> list[str]:
        return [json.loads(line)["step"] for line in self.lines]

    async def interrupt(self) -> tuple[int, str]:
        """Ctrl-C: the exit status and what it wrote on stderr."""
        assert self.process.stderr is not None
        if self.process.returncode is None:
            self.process.send_signal(signal.SIGINT)
        code = await asyncio.wait_for(self.process.wait(), 30)
        await self.reading
        return code, (await self.process.stderr.read()).decode()


async def handoff(http: aiohttp.ClientSession, gateway: RunningGateway, run: str, step: str) -> None:
    headers = {RUN: run, STEP: step}
    async with http.post(f"{gateway.data_url}/agent/tasks", json={}, headers=headers) as response:
        assert response.status == 200


async def test_tail_follows_live_filters_by_run_survives_a_dropped_connection_and_exits_0_on_ctrl_c(
    gateway: RunningGateway, http: aiohttp.ClientSession, proxy: tuple[CuttableProxy, str]
) -> None:
    relay, url = proxy
    await handoff(http, gateway, "r1", "before")  # already recorded: tail shows only what happens from now on
    tail = await Tailing.start("--run", "r1", "--json", "--admin-url", url)
    try:

        async def live() -> bool:
            await handoff(http, gateway, "r2", "other run")
            await handoff(http, gateway, "r1", "live")  # until the stream is up, each try adds one more
            return bool(tail.lines)

        await eventually(live, every=0.2, within=20, what="a live handoff of r1 is printed")
        relay.cut()  # the admin connection drops; what happens now is announced on no stream
        await handoff(http, gateway, "r1", "while down")
        relay.refusing = False
        await eventually(lambda: "while down" in tail.steps(), within=30, what="the gap caught up on reconnecting")
        await handoff(http, gateway, "r1", "after")
        await eventually(lambda: tail.steps()[-1:] == ["after"], what="the reconnected stream is followed")
    finally:
        code, err = await tail.interrupt()
    assert code == 0, err
    steps = tail.steps()
    assert steps[-2:] == ["while down", "after"]  # each once, in order, only run r1, nothing from before
    assert set(steps[:-2]) == {"live"}
    record = json.loads(tail.lines[0])
    assert (record["run_id"], record["target"], record["status"], record["verdict"]) == (
        "r1",
        "agent",
        200,
        "unchecked",
    )
    assert code == 0
    assert err  # the drop is said: one line per attempt, never a traceback
    assert all(line.startswith("agent-gateway: ") and "reconnecting in" in line for line in err.splitlines())


async def test_tail_prints_a_line_per_handoff_for_a_person(
    gateway: RunningGateway, http: aiohttp.ClientSession
) -> None:
    tail = await Tailing.start("--admin-url", str(gateway.admin_url))
    try:

        async def printed() -> bool:
            await handoff(http, gateway, "human", "s1")  # until the stream is up, each try adds one more
            return bool(tail.lines)

        await eventually(printed, every=0.2, what="a handoff is printed")
    finally:
        code, err = await tail.interrupt()
    assert "  human  unknown → agent  POST /tasks  200  unchecked  " in tail.lines[0]
    assert (code, err) == (0, "")
