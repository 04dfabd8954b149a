"""Pure helpers for the agent protocols the gateway speaks on behalf of its callers.

Nothing here touches aiohttp: every function takes parsed documents, bytes or strings and returns dataclasses,
so the data path (``gateway/dataplane``) can call them from any stage and tests can drive them directly.

- :mod:`gateway.protocols.jsonrpc`: JSON-RPC 2.0 envelopes (MCP, A2A): classify, key, pair by ``id``, refuse.
- :mod:`gateway.protocols.sse`: an incremental Server-Sent Events parser with a per-event size limit, and a
  serializer.
- :mod:`gateway.protocols.openai`: the assistant content of OpenAI chat completions, streamed or not, and the
  JSON it carries inside strings.
- :mod:`gateway.protocols.agent_card`: point an A2A agent card's interface URLs at the gateway.
"""
