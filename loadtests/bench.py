"""Throughput and latency of the gateway against a direct call and a bare aiohttp pass-through proxy.

    python loadtests/bench.py            # 1 KiB and 100 KiB, 10 s per cell
    python loadtests/bench.py --quick    # 4 s per cell: well under two minutes
    python loadtests/bench.py --quick --sizes 1KiB 100KiB 1MiB --open-loop 250 500

Every party is its own process on loopback: the upstream agent, the bare proxy (the Python floor: read the
body, forward it and the headers with one pooled session, relay the answer), the gateway (``agent-gateway serve``
with a contract enforced on request *and* response, default settings: audit trail on), the same gateway with the
audit trail off ("no audit"), and the load generator (``wrk`` when installed, else a
closed-loop aiohttp client pool). Each cell drives the same closed-loop load, and the table shows req/s,
p50/p99, CPU per request, the gateway's garbage collections per 1,000 requests by generation (``gcprobe.py``)
and the ratios gateway/direct and gateway/bare. Timing thresholds live here, never in unit tests.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from gcprobe import snapshot

HERE = Path(__file__).resolve().parent
SIZES = {"1KiB": 1024, "100KiB": 100 * 1024, "1MiB": 1024 * 1024}
DEFAULT_SIZES = ("1KiB", "100KiB")
ITEM = {"claim": "handoffs fail at the coordination layer", "source": "https://example.org/paper", "score": 0.5}
CONTRACT_TEMPLATE: dict[str, Any] = {
    "id": "bench.findings",
    "route": "agent",
    "operation": {"method": "POST", "path": "/findings"},
    "request": {"body": {"$ref": "https://bench.test/findings.json"}},
    "responses": {"200": {"$ref": "https://bench.test/findings.json"}},
    "schemas": [
        {
            "$id": "https://bench.test/findings.json",
            "type": "object",
            "required": ["run", "findings"],
            "properties": {
                "run": {"type": "string"},
                "findings": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "required": ["claim", "source", "score"],
                        "properties": {
                            "claim": {"type": "string", "minLength": 1},
                            "source": {"type": "string"},
                            "score": {"type": "number", "minimum": 0, "maximum": 1},
                        },
                    },
                },
            },
        }
    ],
}


def payload(size: int) -> bytes:
    """A JSON document of about ``size`` bytes that satisfies the benchmark contract."""
    item = json.dumps(ITEM)
    count = max(1, (size - 40) // (len(item) + 1))
    doc = json.dumps({"run": "bench", "findings": [ITEM] * count}).encode()
    return doc + b" " * max(0, size - len(doc))


# -- the parties (each runs in its own process) ------------------------------------------------------------


def _uvloop() -> None:
    import uvloop

    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())


def run_upstream(port: int) -> None:
    from aiohttp import web

    async def handle(request: web.Request) -> web.Response:
        body = await request.read()  # answer with the same document: responses are as large as requests
        return web.Response(body=body, content_type="application/json")

    _uvloop()
    app = web.Application(client_max_size=16 * 1024 * 1024)
    app.router.add_post("/findings", handle)
    web.run_app(app, host="127.0.0.1", port=port, access_log=None, print=None)


def run_bare_proxy(port: int, upstream: str) -> None:
    """The floor: a faithful aiohttp reverse proxy (headers both ways, hop-by-hop dropped) that checks nothing."""
    import aiohttp
    from aiohttp import web

    hop = ("Connection", "Keep-Alive", "Transfer-Encoding", "TE", "Upgrade", "Host", "Content-Length")

    async def start(app: web.Application) -> Any:
        app["session"] = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0), auto_decompress=False)
        yield
        await app["session"].close()

    async def handle(request: web.Request) -> web.Response:
        body = await request.read()
        headers = request.headers.copy()
        for name in hop:
            headers.popall(name, None)
        async with request.app["session"].request(
            request.method, upstream + request.raw_path, data=body, headers=headers
        ) as resp:
            data = await resp.read()
            out = resp.headers.copy()
            for name in hop:
                out.popall(name, None)
            return web.Response(body=data, status=resp.status, headers=out)

    _uvloop()
    app = web.Application(client_max_size=16 * 1024 * 1024)
    app.cleanup_ctx.append(start)
    app.router.add_route("*", "/{tail:.*}", handle)
    web.run_app(app, host="127.0.0.1", port=port, access_log=None, print=None, reuse_port=True)  # --workers N


def run_client(url: str, body: bytes, seconds: float, connections: int) -> dict[str, float]:
    """Closed-loop load from an aiohttp client pool (used when wrk is not installed)."""
    import aiohttp

    async def main() -> dict[str, float]:
        latencies: list[float] = []
        errors = 0
        deadline = time.perf_counter() + seconds
        headers = {"Content-Type": "application/json"}
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=connections)) as session:

            async def worker() -> None:
                nonlocal errors
                while (start := time.perf_counter()) < deadline:
                    async with session.post(url, data=body, headers=headers) as resp:
                        await resp.read()
                        if resp.status != 200:
                            errors += 1
                    latencies.append(time.perf_counter() - start)

            began = time.perf_counter()
            await asyncio.gather(*(worker() for _ in range(connections)))
            elapsed = time.perf_counter() - began
        latencies.sort()
        return {
            "rps": len(latencies) / elapsed,
            "p50_ms": latencies[len(latencies) // 2] * 1000,
            "p99_ms": latencies[int(len(latencies) * 0.99)] * 1000,
            "errors": errors,
        }

    _uvloop()
    return asyncio.run(main())


# -- orchestration ------------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def wait_ready(url: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=1):
                return
        except urllib.error.HTTPError:
            return  # it answers: that is ready enough
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"{url} did not come up")


@contextmanager
def process(*args: str, env: dict[str, str] | None = None) -> Iterator[subprocess.Popen[bytes]]:
    proc = subprocess.Popen(args, env={**os.environ, **(env or {})}, stdout=subprocess.DEVNULL)
    try:
        yield proc
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def wrk(url: str, body: bytes, seconds: float, connections: int, workdir: Path) -> dict[str, float]:
    body_file = workdir / f"body-{len(body)}.json"
    body_file.write_bytes(body)
    script = workdir / "post.lua"
    script.write_text(
        f'local f = io.open("{body_file}", "rb")\nwrk.method = "POST"\nwrk.body = f:read("*a")\nf:close()\n'
        'wrk.headers["Content-Type"] = "application/json"\n'
        "done = function(summary, latency, requests)\n"
        '  io.write(string.format("JSON {\\"requests\\": %d, \\"seconds\\": %f, \\"p50\\": %f, \\"p99\\": %f, '
        '\\"errors\\": %d}\\n", summary.requests, summary.duration / 1e6, latency:percentile(50) / 1000, '
        "latency:percentile(99) / 1000, summary.errors.status + summary.errors.connect + summary.errors.read"
        " + summary.errors.write + summary.errors.timeout))\nend\n"
    )
    out = subprocess.run(
        ["wrk", "-t1", f"-c{connections}", f"-d{int(seconds)}s", "-s", str(script), url],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    line = next(ln for ln in out.stdout.splitlines() if ln.startswith("JSON "))
    stats = json.loads(line[5:])
    return {
        "rps": stats["requests"] / stats["seconds"],
        "p50_ms": stats["p50"],
        "p99_ms": stats["p99"],
        "errors": stats["errors"],
    }


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used so far (Linux ``/proc``)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def measure(
    url: str, body: bytes, args: argparse.Namespace, workdir: Path, pid: int, *, gateway: bool = False
) -> dict[str, Any]:
    """One cell: load ``url`` and report throughput, latency, the CPU the process behind it spent and, for a
    gateway (run under ``gcprobe.py``), its garbage collections per 1,000 requests."""
    before, collected = cpu_seconds(pid), snapshot(workdir, pid) if gateway else None
    stats: dict[str, Any] = dict(load(url, body, args, workdir))
    requests = max(1.0, stats["rps"] * args.seconds)
    stats["cpu_us"] = (cpu_seconds(pid) - before) / requests * 1e6
    after = snapshot(workdir, pid) if collected is not None else None
    if collected is not None and after is not None:
        stats["gc"] = "/".join(f"{(b - a) * 1000 / requests:.0f}" for a, b in zip(collected, after, strict=True))
    return stats


def load(url: str, body: bytes, args: argparse.Namespace, workdir: Path) -> dict[str, float]:
    if args.loader == "wrk":
        return wrk(url, body, args.seconds, args.connections, workdir)
    done = subprocess.run(
        [sys.executable, __file__, "--role", "client", "--url", url, "--body-size", str(len(body)),
         "--seconds", str(args.seconds), "--connections", str(args.connections)],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    result: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def gateway_config(
    workdir: Path, upstream: str, name: str, audit: bool, *, shipped: bool = False
) -> tuple[Path, int, int]:
    """A gateway's settings: ``shipped`` leaves every default as a user gets it (log level included); otherwise
    the tuned one (log level WARNING), with or without the audit trail."""
    port, admin_port = free_port(), free_port()
    contracts = workdir / "contracts"
    contracts.mkdir(exist_ok=True)
    (contracts / "bench.json").write_text(json.dumps(CONTRACT_TEMPLATE))
    config = workdir / f"{name}.yaml"
    config.write_text(
        json.dumps(
            {
                "listen": {"host": "127.0.0.1", "port": port},
                "admin": {"port": admin_port, "token": "bench"},
                "store": {"path": str(workdir / f"{name}.db")},
                "routes": [{"name": "agent", "upstream": upstream}],
                "contract_dirs": [str(contracts)],
                "audit": {"enabled": audit},
                **({} if shipped else {"log_level": "WARNING"}),
            }
        )
    )
    return config, port, admin_port


def run_all(args: argparse.Namespace) -> int:
    import bench_workers  # --workers N; imports this module, so not at the top

    workdir = Path(tempfile.mkdtemp(prefix="agent-gateway-bench-"))
    up_port, bare_port = free_port(), free_port()
    upstream = f"http://127.0.0.1:{up_port}"
    shipped_config, shipped_port, shipped_admin = gateway_config(workdir, upstream, "shipped", True, shipped=True)
    config, gw_port, admin_port = gateway_config(workdir, upstream, "gateway", audit=True)
    lean_config, lean_port, lean_admin = gateway_config(workdir, upstream, "lean", audit=False)
    me = [sys.executable, __file__]
    serve = [sys.executable, str(HERE / "gcprobe.py"), str(workdir), "serve", "--config"]
    rows: list[tuple[str, str, dict[str, Any]]] = []
    with (
        process(*me, "--role", "upstream", "--port", str(up_port)) as up_proc,
        process(*me, "--role", "bare", "--port", str(bare_port), "--url", upstream) as bare_proc,
        process(*serve, str(config), env={"OTEL_TRACES_EXPORTER": "none"}) as gw_proc,
        process(*serve, str(lean_config), env={"OTEL_TRACES_EXPORTER": "none"}) as lean_proc,
        process(*serve, str(shipped_config)) as shipped_proc,
    ):
        for url in (f"{upstream}/findings", f"http://127.0.0.1:{bare_port}/findings"):
            wait_ready(url)
        for port in (admin_port, lean_admin, shipped_admin):
            wait_ready(f"http://127.0.0.1:{port}/readyz")
        targets = {
            "direct": (f"{upstream}/findings", up_proc.pid),
            "bare proxy": (f"http://127.0.0.1:{bare_port}/findings", bare_proc.pid),
            "defaults": (f"http://127.0.0.1:{shipped_port}/agent/findings", shipped_proc.pid),
            "gateway": (f"http://127.0.0.1:{gw_port}/agent/findings", gw_proc.pid),
            "no audit": (f"http://127.0.0.1:{lean_port}/agent/findings", lean_proc.pid),
        }
        for size_name in args.sizes:
            body = payload(SIZES[size_name])
            for gateway in GATEWAYS:
                check_gateway_enforces(targets[gateway][0], body)
            for name, (url, pid) in targets.items():
                load(url, body, argparse.Namespace(**{**vars(args), "seconds": 1}), workdir)  # warm-up
                rows.append((size_name, name, measure(url, body, args, workdir, pid, gateway=name in GATEWAYS)))
        opened = [
            (rate, name, open_loop(targets[name][0], payload(SIZES["1KiB"]), rate, args.seconds, targets[name][1]))
            for rate in args.open_loop
            for name in ("direct", "bare proxy", "defaults")
        ]
        scaled = bench_workers.measure_workers(args, workdir, upstream) if args.workers > 1 else []
    print_table(rows, args)
    if scaled:
        bench_workers.print_workers(rows + scaled, args)
    if opened:
        print_open_loop(opened, args)
    shutil.rmtree(workdir, ignore_errors=True)
    return 0


GATEWAYS = ("defaults", "gateway", "no audit")
"""``defaults``: the settings a user gets (log level INFO, audit on); ``gateway``: tuned (log level WARNING),
audit on; ``no audit``: tuned, audit off."""


def run_open_loop(url: str, body: bytes, rate: float, seconds: float) -> dict[str, float]:
    """Open-loop load: request *i* is due at ``start + i / rate`` whatever happened to the others, and its
    latency counts from that scheduled time, so a stall shows up in every request it delayed (no coordinated
    omission)."""
    import aiohttp

    async def main() -> dict[str, float]:
        latencies: list[float] = []
        errors = 0
        headers = {"Content-Type": "application/json"}
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:

            async def one(due: float) -> None:
                nonlocal errors
                await asyncio.sleep(max(0.0, due - time.perf_counter()))
                try:
                    async with session.post(url, data=body, headers=headers) as resp:
                        await resp.read()
                        errors += resp.status != 200
                except aiohttp.ClientError:
                    errors += 1
                latencies.append(time.perf_counter() - due)

            start = time.perf_counter() + 0.2
            await asyncio.gather(*(one(start + i / rate) for i in range(int(rate * seconds))))
        latencies.sort()

        def at(q: float) -> float:
            return latencies[min(len(latencies) - 1, int(len(latencies) * q))] * 1000

        return {"p50_ms": at(0.5), "p99_ms": at(0.99), "p999_ms": at(0.999), "errors": errors, "sent": len(latencies)}

    _uvloop()
    return asyncio.run(main())


def open_loop(url: str, body: bytes, rate: float, seconds: float, pid: int) -> dict[str, float]:
    """One open-loop cell, from its own process; with the CPU the target spent per request."""
    before = cpu_seconds(pid)
    done = subprocess.run(
        [sys.executable, __file__, "--role", "open-loop", "--url", url, "--body-size", str(len(body)),
         "--seconds", str(seconds), "--rate", str(rate)],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    stats: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
    stats["cpu_us"] = (cpu_seconds(pid) - before) / max(1.0, stats["sent"]) * 1e6
    return stats


def print_open_loop(rows: list[tuple[float, str, dict[str, float]]], args: argparse.Namespace) -> None:
    print(f"\nopen loop, 1 KiB, {args.seconds:g} s per cell: latency from the scheduled send time; "
          "added = defaults minus direct\n")  # fmt: skip
    print("| req/s | target     | p50 ms | p99 ms | p99.9 ms | errors | CPU µs/req | added p50 | added p99 |")
    print("|-------|------------|--------|--------|----------|--------|------------|-----------|-----------|")
    direct = {rate: stats for rate, name, stats in rows if name == "direct"}
    for rate, name, stats in rows:
        added = "           |           |"
        if name == "defaults":
            d = direct[rate]
            added = f" {stats['p50_ms'] - d['p50_ms']:>9.2f} | {stats['p99_ms'] - d['p99_ms']:>9.2f} |"
        print(
            f"| {rate:>5.0f} | {name:<10} | {stats['p50_ms']:>6.2f} | {stats['p99_ms']:>6.2f} | "
            f"{stats['p999_ms']:>8.2f} | {int(stats['errors']):>6} | {stats['cpu_us']:>10.0f} |{added}"
        )


def check_gateway_enforces(url: str, body: bytes) -> None:
    """Refuse to benchmark a gateway that is not really validating: a broken document must get a 422."""
    broken = urllib.request.Request(url, data=b'{"run": 1}', headers={"Content-Type": "application/json"})
    try:
        urllib.request.urlopen(broken, timeout=5).close()
    except urllib.error.HTTPError as exc:
        exc.close()
        if exc.code == 422:
            good = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"})
            with urllib.request.urlopen(good, timeout=5) as resp:
                if resp.headers["X-Contract-Verdict"].startswith("valid"):
                    return
    raise RuntimeError("the gateway under test does not enforce the benchmark contract")


def print_table(rows: list[tuple[str, str, dict[str, Any]]], args: argparse.Namespace) -> None:
    print(f"\nloader: {args.loader}, {args.connections} connections, {args.seconds:g} s per cell, "
          f"{os.cpu_count()} CPUs; contract enforced on request and response\n")  # fmt: skip
    header = f"| {'payload':<7} | {'target':<10} | {'req/s':>8} | {'p50 ms':>7} | {'p99 ms':>7} | {'errors':>6} |"
    header += f" {'CPU µs/req':>10} | {'GC/1k g0/1/2':>14} |"
    header += " gateway/direct | gateway/bare |"
    print(header)
    print("|" + "|".join("-" * (len(cell)) for cell in header.split("|")[1:-1]) + "|")
    for size_name in dict.fromkeys(r[0] for r in rows):
        cells = {name: stats for size, name, stats in rows if size == size_name}
        for name, stats in cells.items():
            ratios = "                |              |"
            if name in GATEWAYS:
                direct = stats["rps"] / cells["direct"]["rps"]
                bare = stats["rps"] / cells["bare proxy"]["rps"]
                ratios = f" {direct:>14.2f} | {bare:>12.2f} |"
            print(
                f"| {size_name:<7} | {name:<10} | {stats['rps']:>8.0f} | {stats['p50_ms']:>7.2f} | "
                f"{stats['p99_ms']:>7.2f} | {int(stats['errors']):>6} | {stats['cpu_us']:>10.0f} | "
                f"{stats.get('gc', ''):>14} |{ratios}"
            )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--role", choices=("all", "upstream", "bare", "client", "open-loop"), default="all")
    parser.add_argument("--port", type=int)
    parser.add_argument("--url")
    parser.add_argument("--body-size", type=int, default=1024)
    parser.add_argument("--quick", action="store_true", help="4 s per cell")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--sizes", nargs="+", choices=tuple(SIZES), default=list(DEFAULT_SIZES))
    parser.add_argument("--rate", type=float, default=500.0)
    parser.add_argument(
        "--open-loop", nargs="*", type=float, default=[], metavar="RATE",
        help="also drive direct, bare and the shipped defaults at these fixed rates (req/s), e.g. 250 500",
    )  # fmt: skip
    parser.add_argument("--loader", choices=("wrk", "aiohttp"), default="wrk" if shutil.which("wrk") else "aiohttp")
    parser.add_argument(
        "--workers", type=int, default=1, metavar="N",
        help="also run N bare proxies on one port and the shipped gateway with workers: N (SO_REUSEPORT)",
    )  # fmt: skip
    args = parser.parse_args()
    if args.quick:
        args.seconds = 4.0
    if args.role == "upstream":
        run_upstream(args.port)
    elif args.role == "bare":
        run_bare_proxy(args.port, args.url)
    elif args.role == "client":
        print(json.dumps(run_client(args.url, payload(args.body_size), args.seconds, args.connections)))
    elif args.role == "open-loop":
        print(json.dumps(run_open_loop(args.url, payload(args.body_size), args.rate, args.seconds)))
    else:
        return run_all(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
