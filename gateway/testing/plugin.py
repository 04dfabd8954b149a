"""The pytest plugin (entry point ``pytest11: agent_gateway``): fixtures that start fault-injecting agents and a
real gateway in front of them, and close both after the test.

``agent_gateway`` is a factory: ``gw = await agent_gateway({"writer": writer}, contracts=[...], policies=[...])``
(see :func:`gateway.testing.harness.gateway_in_front_of` for the arguments). ``faulty_agent`` is a factory of
started :class:`~gateway.testing.agent.FaultyAgent` servers. Both are async fixtures: the plugin declares them
with pytest-asyncio (``pytest-aiohttp`` brings it), so they work in its strict and auto modes alike; without
pytest-asyncio installed the plugin defines nothing, and never breaks an unrelated test run.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from gateway.testing.agent import FaultyAgent
from gateway.testing.harness import GatewayFactory, GatewayUnderTest, gateway_in_front_of

AgentFactory = Callable[..., Awaitable[FaultyAgent]]

try:
    import pytest_asyncio

    HAVE_PYTEST_ASYNCIO = True
except ImportError:  # pragma: no cover - exercised only where pytest-asyncio is absent
    HAVE_PYTEST_ASYNCIO = False

if HAVE_PYTEST_ASYNCIO:

    @pytest_asyncio.fixture
    async def agent_gateway() -> AsyncIterator[GatewayFactory]:
        """Start gateways in front of agents; each is closed when the test ends."""
        async with contextlib.AsyncExitStack() as stack:

            async def start(agents: Any, **options: Any) -> GatewayUnderTest:
                return await stack.enter_async_context(gateway_in_front_of(agents, **options))

            yield start

    @pytest_asyncio.fixture
    async def faulty_agent() -> AsyncIterator[AgentFactory]:
        """Start ``FaultyAgent(*args, **kwargs)`` servers; each is closed (and its setup errors raised) at the end."""
        async with contextlib.AsyncExitStack() as stack:

            async def start(*args: Any, **kwargs: Any) -> FaultyAgent:
                return await stack.enter_async_context(FaultyAgent(*args, **kwargs))

            yield start
