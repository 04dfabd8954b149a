"""A real gateway for a pipeline's tests: started in-process with an embedded configuration (a SQLite file in a
temporary directory, a random admin token, loopback ports), one route per agent, the given contracts and policies
registered through the admin API exactly as an operator would, and helpers to call through it and read back what
it recorded.

Why a real one: what a team wants to know is what *their* contracts and policies do to *their* pipeline when an
agent misbehaves (retried? refused with which status? escalated?), which only the assembled gateway can say.
The pytest fixture ``agent_gateway`` (:mod:`gateway.testing.plugin`) wraps :func:`gateway_in_front_of`.
"""

from __future__ import annotations

import secrets
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import aiohttp
import orjson
from multidict import CIMultiDictProxy
from opentelemetry.sdk.trace import TracerProvider

from gateway.admin.client import AdminClient
from gateway.app import RunningGateway, start_gateway
from gateway.config import GatewayConfig, deep_merge
from gateway.headers import VERDICT


class HasUrl(Protocol):
    @property
    def url(self) -> str: ...


@dataclass(frozen=True, slots=True)
class Reply:
    """An answer the gateway gave: status, headers, raw body, and the pieces a test asserts on."""

    status: int
    headers: CIMultiDictProxy[str]
    body: bytes

    @property
    def json(self) -> Any:
        """The body parsed as JSON (an agent's answer, or the gateway's problem document)."""
        return orjson.loads(self.body)

    @property
    def verdict(self) -> str | None:
        """The verdict of ``X-Contract-Verdict`` (a :class:`gateway.outcomes.Verdict` value), if any."""
        header = self.headers.get(VERDICT)
        return header.split(";", 1)[0].strip() if header else None

    @property
    def problem_type(self) -> str | None:
        """The last segment of a problem document's ``type`` (``response_invalid``, ``upstream_timeout``…)."""
        if not self.headers.get("Content-Type", "").startswith("application/problem+json"):
            return None
        return str(self.json["type"]).rsplit("/", 1)[-1]


class GatewayUnderTest:
    """A started gateway in front of the agents; :attr:`admin` is an authenticated admin API client."""

    def __init__(self, gateway: RunningGateway, admin: AdminClient, session: aiohttp.ClientSession, token: str) -> None:
        self.gateway = gateway
        self.admin = admin
        self.token = token
        """The admin token (e.g. for ``AGENT_GATEWAY_ADMIN_TOKEN`` when a test runs the ``agent-gateway`` CLI)."""
        self._session = session

    @property
    def data_url(self) -> str:
        return self.gateway.data_url

    @property
    def admin_url(self) -> str:
        return self.admin.base_url

    def url(self, route: str, path: str = "/") -> str:
        """The data-plane URL of ``path`` on the agent behind ``route`` (routes are prefixed ``/<route>``)."""
        return f"{self.data_url}/{route}{path if path.startswith('/') else '/' + path}"

    async def request(
        self, method: str, route: str, path: str = "/", *, json: Any = None, data: bytes | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> Reply:  # fmt: skip
        """One call through the gateway; the whole answer is read (a cut connection raises ``aiohttp`` errors)."""
        sent = dict(headers or {})
        if json is not None:
            data = orjson.dumps(json)
            sent.setdefault("Content-Type", "application/json")
        async with self._session.request(method, self.url(route, path), data=data, headers=sent) as response:
            return Reply(response.status, response.headers, await response.read())

    async def post(self, route: str, path: str = "/", **kwargs: Any) -> Reply:
        return await self.request("POST", route, path, **kwargs)

    async def run(self, run_id: str) -> dict[str, Any]:
        """The run's timeline as ``GET /runs/{id}`` returns it (``handoffs``, ``entry_point``, ``downstream``)."""
        timeline: dict[str, Any] = await self.admin.request("GET", f"/runs/{run_id}")
        return timeline

    async def dlq(self, status: str = "pending") -> list[dict[str, Any]]:
        """Dead-letter queue items with ``status``, newest first."""
        answer = await self.admin.request("GET", f"/dlq?status={status}")
        items: list[dict[str, Any]] = answer["escalations"]
        return items


GatewayFactory = Callable[..., Awaitable[GatewayUnderTest]]
"""What the ``agent_gateway`` fixture is: ``await agent_gateway(agents, contracts=..., policies=..., settings=...)``."""


def _url(agent: str | HasUrl) -> str:
    return agent if isinstance(agent, str) else agent.url


def embedded_config(agents: Mapping[str, str | HasUrl], directory: Path, token: str,
                settings: Mapping[str, Any]) -> GatewayConfig:  # fmt: skip
    """The embedded configuration: loopback ports chosen by the system, a SQLite file in ``directory``."""
    base = {
        "listen": {"host": "127.0.0.1", "port": 0},
        "admin": {"host": "127.0.0.1", "port": 0, "token": token},
        "store": {"backend": "sqlite", "path": str(directory / "gateway.db")},
        "routes": [{"name": name, "upstream": _url(agent)} for name, agent in agents.items()],
    }
    return GatewayConfig.model_validate(deep_merge(base, settings))


@asynccontextmanager
async def gateway_in_front_of(
    agents: Mapping[str, str | HasUrl], *, contracts: Sequence[Mapping[str, Any]] = (),
    policies: Sequence[Mapping[str, Any]] = (), settings: Mapping[str, Any] | None = None,
    tracer_provider: TracerProvider | None = None,
) -> AsyncIterator[GatewayUnderTest]:  # fmt: skip
    """A gateway with route ``<name>`` → each agent (a URL or anything with ``.url``, e.g. a ``FaultyAgent``),
    ``contracts`` and ``policies`` registered (each list as one atomic change), ``settings`` merged over the
    embedded configuration (e.g. ``{"audit": {"payloads": True}, "timeouts": {"read": 1}}``). Closed on exit."""
    token = secrets.token_urlsafe(16)
    async with AsyncExitStack() as stack:
        directory = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="agent-gateway-test-")))
        config = embedded_config(agents, directory, token, settings or {})
        gateway = await start_gateway(config, tracer_provider=tracer_provider)
        stack.push_async_callback(gateway.close)
        admin = await stack.enter_async_context(AdminClient(gateway.admin_url, token))
        session = await stack.enter_async_context(aiohttp.ClientSession(auto_decompress=False))
        if contracts:
            await admin.request("POST", "/contracts", body={"contracts": list(contracts)})
        if policies:
            await admin.request("POST", "/policies", body={"policies": list(policies)})
        yield GatewayUnderTest(gateway, admin, session, token)
