"""The data path as a chain of stages, in the manner of Envoy's HTTP filter chain and starlette's middleware stack.

Every stage has one interface: ``async (exchange, call_next) -> response``. A stage continues by awaiting
``call_next(exchange)``, and stops by returning a response or raising. The chain is composed once, at start-up
(:func:`compose`), in the one order :mod:`gateway.dataplane.proxy` states; per request, a stage costs one call.
No stage imports another: a stage knows only the exchange, the stage below it (as ``call_next``) and the parts
it was built with.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Protocol

from aiohttp import web

from gateway.dataplane.exchange import Exchange

Next = Callable[[Exchange], Awaitable[web.StreamResponse]]


class Stage(Protocol):
    async def __call__(self, exchange: Exchange, call_next: Next) -> web.StreamResponse: ...


class Terminal(Protocol):
    """The last stage: it answers (here, by calling the agent) and has nothing below it."""

    async def __call__(self, exchange: Exchange) -> web.StreamResponse: ...


class _Link:
    """One stage bound to the rest of the chain below it."""

    __slots__ = ("_next", "_stage")

    def __init__(self, stage: Stage, call_next: Next) -> None:
        self._stage = stage
        self._next = call_next

    def __call__(self, exchange: Exchange) -> Awaitable[web.StreamResponse]:
        return self._stage(exchange, self._next)


def compose(stages: Sequence[Stage], terminal: Terminal) -> Next:
    """``stages[0]`` outermost, ``terminal`` innermost."""
    handler: Next = terminal
    for stage in reversed(stages):
        handler = _Link(stage, handler)
    return handler
