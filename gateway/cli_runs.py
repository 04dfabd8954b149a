"""``agent-gateway runs list|show|tail|replay``: what the pipelines did, from the admin API's audit trail.

``tail`` follows new handoffs live from the admin listener's ``GET /events`` stream (server-sent events). The
first call is an ordinary admin request, so a wrong URL or token fails at once in one line; after that a dropped
stream is reconnected with exponential backoff, and what happened while it was down is read from ``GET /runs``
(the stream itself starts afresh on every connection), so no handoff is lost and none is printed twice.
Ctrl-C ends it with exit status 0 and nothing on stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from datetime import datetime
from typing import Any

import aiohttp
import orjson

from gateway.admin.client import AdminAPIError, AdminClient, AdminUnavailable, admin_base_url
from gateway.admin.events import HANDOFF_FIELDS
from gateway.cli_format import add_json_option, colour_wanted, paint, show, when
from gateway.cli_replay import add_replay_command
from gateway.cli_support import admin_client, field, print_json
from gateway.config import ADMIN_TOKEN_VARIABLE
from gateway.report import render_timeline

BACKOFF_FIRST, BACKOFF_MAX = 0.25, 10.0
"""Seconds before the first reconnection attempt, doubled after each failure up to the cap."""
READ_TIMEOUT = 45.0
"""Silence after which the stream counts as dropped: three of the admin listener's 15 s keep-alives missed."""
REMEMBERED = 100_000
"""Handoff ids kept to print each handoff once; the oldest are forgotten past this (a long tail stays bounded)."""
GAP_RUNS = 50
"""Recent runs read after a reconnection to find the handoffs made while the stream was down."""


async def _list(args: argparse.Namespace, admin: AdminClient) -> None:
    answer = await admin.request("GET", f"/runs?limit={args.limit}")
    rows = [(r["run_id"], r["handoffs"], r["failures"], when(r["first_at"]), when(r["last_at"]))
            for r in field(answer, "runs")]  # fmt: skip
    show(args, answer, ("run", "handoffs", "failures", "first", "last"), rows)


async def _show(args: argparse.Namespace, admin: AdminClient) -> None:
    run = await admin.request("GET", f"/runs/{args.id}")
    field(run, "handoffs")  # refuse a foreign answer before rendering it as a timeline
    if args.json:
        print_json(run)
    else:
        print(render_timeline(run))


async def runs_command(args: argparse.Namespace) -> int:
    async with admin_client(args) as admin:
        await (_list if args.action == "list" else _show)(args, admin)
    return 0


class Tail:
    """What has been printed (handoff ids, the newest start time) and how to print the next handoff."""

    def __init__(self, run: str | None, as_json: bool) -> None:
        self.run, self.as_json, self.colour = run, as_json, colour_wanted()
        self.seen: dict[str, None] = {}
        self.newest = 0.0

    def emit(self, handoff: Mapping[str, Any]) -> None:
        """Print a handoff once, if it belongs to the run asked for."""
        if handoff["id"] in self.seen or (self.run is not None and handoff["run_id"] != self.run):
            return
        self.seen[handoff["id"]] = None
        if len(self.seen) > REMEMBERED:
            del self.seen[next(iter(self.seen))]
        self.newest = max(self.newest, handoff["started_at"])
        view = {name: handoff.get(name) for name in HANDOFF_FIELDS}
        print(orjson.dumps(view).decode() if self.as_json else self.line(view), flush=True)

    def line(self, h: Mapping[str, Any]) -> str:
        at = datetime.fromtimestamp(h["started_at"]).strftime("%H:%M:%S.%f")[:-3]
        contract = f"  [{h['contract']} v{h['contract_version']}]" if h.get("contract") else ""
        retry = f" (attempt {h['attempt']})" if h["attempt"] > 1 else ""
        return (f"{at}  {h['run_id']}  {h['source']} → {h['target']}  {h['method']} {h['path']}  {h['status']}  "
                f"{paint(h['verdict'], 0, self.colour)}  {h['duration_ms']:.1f} ms{retry}{contract}")  # fmt: skip


async def _events(response: aiohttp.ClientResponse) -> AsyncIterator[tuple[str, Any]]:
    """(event name, decoded data) for each server-sent event; comments (keep-alives) are skipped."""
    name, data = "message", b""
    async for raw in response.content:
        line = raw.rstrip(b"\r\n")
        if not line:
            if data:
                yield name, orjson.loads(data)
            name, data = "message", b""
        elif line.startswith(b"event:"):
            name = line[6:].strip().decode()
        elif line.startswith(b"data:"):
            data += line[5:].strip()


async def _catch_up(admin: AdminClient, tail: Tail) -> None:
    """Print the handoffs made since the newest one printed: those the stream announced to nobody."""
    if tail.run is not None:
        run_ids = [tail.run]
    else:
        runs = field(await admin.request("GET", f"/runs?limit={GAP_RUNS}"), "runs")
        run_ids = [r["run_id"] for r in sorted(runs, key=lambda r: r["last_at"]) if r["last_at"] >= tail.newest]
    since = tail.newest
    for run_id in run_ids:
        with contextlib.suppress(AdminAPIError):  # 404: the run has no handoff (yet)
            for handoff in field(await admin.request("GET", f"/runs/{run_id}"), "handoffs"):
                if handoff["started_at"] >= since:
                    tail.emit(handoff)


async def _stream(session: aiohttp.ClientSession, url: str, on_ready: Callable[[], Awaitable[None]],
                  tail: Tail) -> None:  # fmt: skip
    """One connection to ``GET /events``, until it ends; a refusal is the admin API's problem, as for any call."""
    timeout = aiohttp.ClientTimeout(total=None, sock_connect=10, sock_read=READ_TIMEOUT)
    async with session.get(url, headers={"Accept": "text/event-stream"}, timeout=timeout) as response:
        if response.status >= 400 and response.content_type.endswith("json"):
            raise AdminAPIError(response.status, await response.json(content_type=None))
        if response.content_type != "text/event-stream":
            raise AdminUnavailable(f"GET {url} answered {response.status} {response.content_type}, not an event "
                                   "stream: is it the agent-gateway admin listener?")  # fmt: skip
        async for name, data in _events(response):
            if name == "ready":
                await on_ready()
            elif name == "handoff":
                tail.emit(data)
            elif name == "problem":
                print(f"agent-gateway: warning: {data.get('detail') or data.get('title')}", file=sys.stderr)


async def _follow(args: argparse.Namespace, admin: AdminClient) -> None:
    """Stream, and on a dropped stream wait (doubling, capped) and stream again, catching up once ready."""
    tail, delay = Tail(args.run_id, args.json), BACKOFF_FIRST
    runs = field(await admin.request("GET", "/runs?limit=1"), "runs")  # a bad URL or token fails here, once
    tail.newest = runs[0]["last_at"] if runs else 0.0
    first = True
    token = os.environ.get(ADMIN_TOKEN_VARIABLE)
    headers = {"Authorization": f"Bearer {token}"} if token else {}

    async def ready() -> None:
        nonlocal delay, first
        delay = BACKOFF_FIRST
        if not first:
            await _catch_up(admin, tail)
        first = False

    async with aiohttp.ClientSession(headers=headers) as session:
        while True:
            try:
                await _stream(session, admin_base_url(args.admin_url) + "/events", ready, tail)
                reason = "the stream ended"
            except AdminUnavailable as exc:  # the catch-up's calls: down again, or a proxy's error page meanwhile
                reason = str(exc)
            except (aiohttp.ClientError, TimeoutError) as exc:
                reason = " ".join(str(exc).split()) or type(exc).__name__
            print(f"agent-gateway: {reason}; reconnecting in {delay:g} s", file=sys.stderr, flush=True)
            await asyncio.sleep(delay)
            delay = min(delay * 2, BACKOFF_MAX)


async def tail_command(args: argparse.Namespace) -> int:
    """``runs tail``: follow until Ctrl-C (or SIGTERM), which ends it quietly with exit status 0."""
    loop = asyncio.get_running_loop()
    async with admin_client(args) as admin:
        following = asyncio.ensure_future(_follow(args, admin))
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, following.cancel)
        with contextlib.suppress(asyncio.CancelledError):
            await following
    return 0


def add_runs_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser],
                      admin_url: argparse.ArgumentParser) -> None:  # fmt: skip
    """``runs list|show|tail|replay``."""
    runs = sub.add_parser("runs", help="inspect recorded pipeline runs through the admin API")
    actions = runs.add_subparsers(dest="action", required=True, metavar="ACTION")
    listing = actions.add_parser("list", parents=[admin_url], help="recent runs, newest first")
    listing.add_argument("--limit", type=int, default=20, help="how many runs (default 20)")
    shown = actions.add_parser("show", parents=[admin_url], help="a run's timeline and where a violation entered")
    shown.add_argument("id", help="the run id (X-Run-Id)")
    for parser in (listing, shown):
        add_json_option(parser)
        parser.set_defaults(run=runs_command)
    tail = actions.add_parser("tail", parents=[admin_url], help="follow new handoffs live (Ctrl-C to stop)")
    tail.add_argument("--run", dest="run_id", metavar="ID", help="only the handoffs of this run")
    tail.add_argument("--json", action="store_true", help="one JSON object per handoff and line")
    tail.set_defaults(run=tail_command)
    add_replay_command(actions, admin_url)
