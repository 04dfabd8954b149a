"""``bench.py --workers N``: the shipped gateway with ``workers: N`` next to N bare proxies on one port.

Scale-out is judged against the same number of processes: N bare proxies sharing a port with ``SO_REUSEPORT``
are the floor for N gateway workers, as one bare proxy is for one gateway. Each party is measured once all N of
its sockets listen (``/proc/net/tcp``), and its CPU per request is summed over all its processes.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import time
from pathlib import Path
from typing import Any

from bench import SIZES, cpu_seconds, free_port, gateway_config, load, payload, process


def listening(port: int) -> int:
    """How many sockets listen on loopback ``port``: one per process that has bound it (``/proc/net/tcp``)."""
    wanted = f"0100007F:{port:04X}"
    rows = [row.split() for row in Path("/proc/net/tcp").read_text().splitlines()[1:]]
    return sum(1 for row in rows if row[1] == wanted and row[3] == "0A")


def family(pid: int) -> list[int]:
    """``pid`` and its descendants (a supervisor and its workers)."""
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    return [pid, *(p for child in children for p in family(int(child)))]


def measure_workers(args: argparse.Namespace, workdir: Path, upstream: str) -> list[tuple[str, str, dict[str, Any]]]:
    """``--workers N``: N bare proxies sharing one port next to the shipped gateway with ``workers: N``, each
    measured once all N sockets listen; CPU per request is summed over every process of the party."""
    n, bare_port = args.workers, free_port()
    config, port, _ = gateway_config(workdir, upstream, f"workers{n}", True, shipped=True)
    config.write_text(json.dumps({**json.loads(config.read_text()), "workers": n}))
    rows: list[tuple[str, str, dict[str, Any]]] = []
    with contextlib.ExitStack() as stack:
        bare = [stack.enter_context(process(*bare_command(bare_port, upstream))).pid for _ in range(n)]
        fleet = stack.enter_context(process(sys.executable, "-m", "gateway.cli", "serve", "--config", str(config)))
        parties = {
            f"bare x{n}": (f"http://127.0.0.1:{bare_port}/findings", bare_port, lambda: bare),
            f"defaults x{n}": (f"http://127.0.0.1:{port}/agent/findings", port, lambda: family(fleet.pid)),
        }
        for _, listen_port, _ in parties.values():
            while listening(listen_port) < n:
                time.sleep(0.1)
        for size_name in args.sizes:
            body = payload(SIZES[size_name])
            for name, (url, _, pids) in parties.items():
                load(url, body, argparse.Namespace(**{**vars(args), "seconds": 1}), workdir)  # warm-up
                before = sum(cpu_seconds(pid) for pid in pids())
                stats: dict[str, Any] = dict(load(url, body, args, workdir))
                spent = sum(cpu_seconds(pid) for pid in pids()) - before
                stats["cpu_us"] = spent / max(1.0, stats["rps"] * args.seconds) * 1e6
                rows.append((size_name, name, stats))
    return rows


def bare_command(port: int, upstream: str) -> list[str]:
    return [
        sys.executable,
        str(Path(__file__).with_name("bench.py")),
        "--role",
        "bare",
        "--port",
        str(port),
        "--url",
        upstream,
    ]


def print_workers(rows: list[tuple[str, str, dict[str, Any]]], args: argparse.Namespace) -> None:
    """Scale-out: the shipped gateway over the bare proxy with the same number of processes, 1 and N."""
    n = args.workers
    print(f"\nscale-out (workers: {n}, SO_REUSEPORT): shipped defaults vs as many bare proxies\n")
    print("| payload | processes | bare req/s | gateway req/s | gateway/bare | gateway CPU µs/req |")
    print("|---------|-----------|------------|---------------|--------------|--------------------|")
    for size_name in dict.fromkeys(r[0] for r in rows):
        cells = {name: stats for size, name, stats in rows if size == size_name}
        for count, bare, gateway in ((1, "bare proxy", "defaults"), (n, f"bare x{n}", f"defaults x{n}")):
            b, g = cells[bare], cells[gateway]
            print(
                f"| {size_name:<7} | {count:>9} | {b['rps']:>10.0f} | {g['rps']:>13.0f} | "
                f"{g['rps'] / b['rps']:>12.2f} | {g['cpu_us']:>18.0f} |"
            )
