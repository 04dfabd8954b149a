"""Test kits for the gateway's users and its own tests; nothing here is used by a running gateway.

- :class:`FaultyAgent` and :class:`Fault`: a fault-injecting agent server (real sockets) for pipeline tests.
- :func:`gateway_in_front_of` / the ``agent_gateway`` pytest fixture: a real gateway with given contracts and
  policies in front of those agents.
- :class:`MemoryUpstream`: an in-memory ``Upstream`` for table-driven tests of the data path's stages.
"""

from gateway.testing.agent import FaultyAgent, Received, every, first
from gateway.testing.faults import Fault, FaultSetupError
from gateway.testing.harness import GatewayFactory, GatewayUnderTest, Reply, gateway_in_front_of
from gateway.testing.upstream import MemoryAnswer, MemoryUpstream, Scripted, Sent

__all__ = [
    "Fault",
    "FaultSetupError",
    "FaultyAgent",
    "GatewayFactory",
    "GatewayUnderTest",
    "MemoryAnswer",
    "MemoryUpstream",
    "Received",
    "Reply",
    "Scripted",
    "Sent",
    "every",
    "first",
    "gateway_in_front_of",
]
