"""The data path as a chain of stages, in the manner of Envoy's HTTP filter chain and starlette's middleware stack.

Every stage has one interface: ``async (exchange, call_next) -> response``. A stage continues by awaiting
``call_next(exchange)``, and stops by returning a response or raising. The chain is composed once, at start-up
(:func:`compose`), in the one order :mod:`gateway.dataplane.proxy` states; per request, a stage costs one call.
No stage imports another: a stage knows only the exchange, the stage below it (as ``call_next``) and the parts
it was built with.
"""

from __future__ import annotations

import functools
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


def compose(stages: Sequence[Stage], terminal: Terminal) -> Next:
    """``stages[0]`` outermost, ``terminal`` innermost. Each stage is bound to the one below it with
    ``functools.partial`` (a C-level call: no Python frame between one stage and the next)."""
    handler: Next = terminal
    for stage in reversed(stages):
        handler = functools.partial(stage.__call__, call_next=handler)
    return handler
