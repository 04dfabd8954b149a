"""Costs that must not grow with the number of contracts (issue 12): registration, matching, start-up.

    python loadtests/scale.py            # N = 100, 1,000, 5,000; 6 s of load per cell
    python loadtests/scale.py --quick    # N = 100, 1,000, 2,000; 3 s per cell

For each N, on a fresh SQLite file:

- **bulk**: one ``POST /contracts`` of N contracts through the admin API of an in-process gateway (ms/contract);
- **one by one**: then ``PUT /contracts/<id>`` of a few new contracts (the (N+1)th, ...) and of a changed version
  of an existing one, each timed alone (median ms): what the Nth registration costs;
- **start-up**: the same file opened by a new in-process gateway, until it is ready (s);
- **throughput**: ``agent-gateway serve`` on that file behind ``wrk`` (or an aiohttp client loop), requests to
  the first contract registered, the last, and a path no contract binds (req/s).

The last table holds the growth ratios against the issue's targets. Every row goes through :func:`print_table`,
which other scale scripts (``scale_store.py``) import so all tables read alike; :func:`main` takes ``argv``
so they can be run one after the other.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import aiohttp

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

from bench import free_port, wait_ready, wrk  # noqa: E402

from gateway.app import start_gateway  # noqa: E402
from gateway.config import GatewayConfig  # noqa: E402

TOKEN = "scale"
SINGLES = 8
"""Registrations timed one by one at each N (their median is the row's figure)."""
ROUNDS = 3
"""Throughput cells are measured in this many interleaved rounds each; the best round counts."""
BODY = b'{"task": "scale", "priority": 1}'
TARGETS = {"registration": 2.0, "matching": 0.9, "start-up": 3.0}


def print_table(title: str, header: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    """A plain-text table, columns as wide as their widest cell; floats with three significant decimals."""

    def cell(value: Any) -> str:
        if isinstance(value, float):
            return f"{value:,.3g}" if abs(value) < 100 else f"{value:,.0f}"
        return f"{value:,}" if isinstance(value, int) else str(value)

    cells = [[cell(v) for v in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) for i, h in enumerate(header)]
    print(f"\n{title}")
    print("  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)))
    print("  ".join("-" * w for w in widths))
    for row in cells:
        print("  ".join(v.rjust(w) for v, w in zip(row, widths, strict=True)))


def contract_document(i: int, *, limit: int = 100) -> dict[str, Any]:
    """Contract ``i``: ``POST /items<i>/{id}`` on route ``agent`` with a small request and response schema."""
    return {
        "id": f"scale.c{i}",
        "route": "agent",
        "operation": {"method": "POST", "path": f"/items{i}/{{id}}"},
        "request": {
            "body": {
                "type": "object",
                "required": ["task", "priority"],
                "properties": {"task": {"type": "string"}, "priority": {"type": "integer", "maximum": limit}},
            }
        },
        "responses": {"200": {"type": "object", "required": ["task"]}},
    }


@contextmanager
def process(*args: str) -> Iterator[subprocess.Popen[bytes]]:
    """A child process whose output is dropped (a load generator's closed connections are logged at length)."""
    env = {**os.environ, "OTEL_TRACES_EXPORTER": "none"}
    proc = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        yield proc
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def config(db: Path, upstream: str, port: int = 0, admin_port: int = 0) -> dict[str, Any]:
    return {
        "listen": {"host": "127.0.0.1", "port": port},
        "admin": {"host": "127.0.0.1", "port": admin_port, "token": TOKEN},
        "store": {"path": str(db)},
        "routes": [{"name": "agent", "upstream": upstream}],
        "audit": {"enabled": False},
        "log_level": "WARNING",
    }


async def _timed(session: aiohttp.ClientSession, method: str, url: str, body: Any) -> float:
    started = time.perf_counter()
    async with session.request(method, url, json=body) as answer:
        await answer.read()
        if answer.status >= 300:
            raise RuntimeError(f"{method} {url}: {answer.status} {await answer.text()}")
    return (time.perf_counter() - started) * 1000


async def registrations(n: int, db: Path, upstream: str) -> dict[str, float]:
    """Bulk registration of ``n`` contracts, then single ones at that size; the store is left holding ``n +
    SINGLES`` contracts (the last registered is ``scale.c<n + SINGLES - 1>``)."""
    gateway = await start_gateway(GatewayConfig.model_validate(config(db, upstream)))
    headers = {"Authorization": f"Bearer {TOKEN}"}
    try:
        async with aiohttp.ClientSession(gateway.admin_url, headers=headers) as session:
            documents = [contract_document(i) for i in range(n)]
            bulk = await _timed(session, "POST", "/contracts", {"contracts": documents})
            fresh = range(n, n + SINGLES)
            new = [await _timed(session, "PUT", f"/contracts/scale.c{i}", contract_document(i)) for i in fresh]
            changed = [
                await _timed(session, "PUT", f"/contracts/scale.c{i}", contract_document(i, limit=1000 + i))
                for i in range(SINGLES)
            ]
            same = [await _timed(session, "PUT", f"/contracts/scale.c{i}", contract_document(i)) for i in fresh]
    finally:
        await gateway.close()
    return {
        "bulk_ms": bulk / n,
        "new_ms": statistics.median(new),
        "changed_ms": statistics.median(changed),
        "same_ms": statistics.median(same),
    }


async def start_up(db: Path, upstream: str) -> float:
    started = time.perf_counter()
    gateway = await start_gateway(GatewayConfig.model_validate(config(db, upstream)))
    elapsed = time.perf_counter() - started
    await gateway.close()
    return elapsed


def throughput(db: Path, upstream: str, last: int, seconds: float, workdir: Path) -> dict[str, float]:
    """req/s to the first contract, the last, and no contract, through a gateway serving ``db``."""
    port, admin_port = free_port(), free_port()
    settings = workdir / "serve.json"
    settings.write_text(json.dumps(config(db, upstream, port, admin_port)))
    started = time.perf_counter()
    serve = [sys.executable, "-m", "gateway.cli", "serve", "--config", str(settings)]
    with process(*serve):
        wait_ready(f"http://127.0.0.1:{admin_port}/readyz", timeout=120)
        ready = time.perf_counter() - started
        base = f"http://127.0.0.1:{port}/agent"
        paths = {"first": "/items0/x", "last": f"/items{last}/x", "none": "/unbound/x"}
        rates = dict.fromkeys(paths, 0.0)
        for path in paths.values():
            wrk(base + path, BODY, 1, 16, workdir)  # warm-up
        for _ in range(ROUNDS):  # interleaved, best of: a shared machine's noise lands on all three alike
            for name, path in paths.items():
                rates[name] = max(rates[name], wrk(base + path, BODY, seconds / ROUNDS, 16, workdir)["rps"])
    return {"ready_s": ready, **rates}


def run_upstream(port: int) -> None:
    """The agent: answers every POST with the request's own document."""
    from aiohttp import web

    async def echo(request: web.Request) -> web.Response:
        return web.Response(body=await request.read(), content_type="application/json")

    app = web.Application()
    app.router.add_route("POST", "/{tail:.*}", echo)
    web.run_app(app, host="127.0.0.1", port=port, access_log=None, print=None)


def measure(sizes: Sequence[int], seconds: float) -> list[tuple[int, dict[str, float]]]:
    workdir = Path(tempfile.mkdtemp(prefix="agent-gateway-scale-"))
    up_port = free_port()
    upstream = f"http://127.0.0.1:{up_port}"
    results = []
    try:
        with process(sys.executable, __file__, "--role", "upstream", "--port", str(up_port)):
            wait_ready(f"{upstream}/", timeout=30)
            for n in sizes:
                db = workdir / f"n{n}.db"
                row = asyncio.run(registrations(n, db, upstream))
                row["start_s"] = asyncio.run(start_up(db, upstream))
                row.update(throughput(db, upstream, n + SINGLES - 1, seconds, workdir))
                results.append((n, row))
                print(f"N={n}: {row}", file=sys.stderr)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return results


def report(results: list[tuple[int, dict[str, float]]]) -> None:
    print_table(
        "Contract registration (admin API, SQLite)",
        ("N", "bulk ms/contract", "new one ms", "changed one ms", "unchanged one ms"),
        [(n, r["bulk_ms"], r["new_ms"], r["changed_ms"], r["same_ms"]) for n, r in results],
    )
    print_table(
        "Start-up and matching (req/s through `agent-gateway serve`, wrk -c16)",
        ("N", "start-up s", "serve→ready s", "first req/s", "last req/s", "none req/s", "last/first"),
        [(n, r["start_s"], r["ready_s"], r["first"], r["last"], r["none"], r["last"] / r["first"]) for n, r in results],
    )
    (n0, small), (n1, big) = results[0], results[-1]
    rows = [
        (f"new registration at {n1} / at {n0}", big["new_ms"] / small["new_ms"], f"≤ {TARGETS['registration']}"),
        (f"changed registration at {n1} / at {n0}", big["changed_ms"] / small["changed_ms"], "≤ 2"),
        (f"last / first contract req/s at {n1}", big["last"] / big["first"], f"≥ {TARGETS['matching']}"),
        (f"no contract / first req/s at {n1}", big["none"] / big["first"], f"≥ {TARGETS['matching']}"),
        (f"start-up s with {n1} contracts", big["start_s"], f"≤ {TARGETS['start-up']} (at 5,000)"),
    ]
    print_table("Growth against the issue's targets", ("measure", "value", "target"), rows)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--role", choices=("all", "upstream"), default="all")
    parser.add_argument("--port", type=int)
    parser.add_argument("--quick", action="store_true", help="N = 100, 1,000, 2,000; 3 s per cell")
    parser.add_argument("--sizes", nargs="+", type=int)
    parser.add_argument("--seconds", type=float)
    args = parser.parse_args(argv)
    if args.role == "upstream":
        run_upstream(args.port)
        return 0
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is needed for the throughput cells")
    sizes = args.sizes or ([100, 1000, 2000] if args.quick else [100, 1000, 5000])
    report(measure(sizes, args.seconds or (3.0 if args.quick else 6.0)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
