"""The gateway CLI with its garbage collections counted by generation, for the benchmark's GC column.

    python loadtests/gcprobe.py DIR serve --config gateway.yaml

Collections are what a parsed payload costs after it is checked: a 100 KiB document is thousands of objects,
and every young collection triggered by them also rescans whatever else is alive. Counting them from outside
needs no hook in the gateway: on SIGUSR1 this wrapper writes ``[gen0, gen1, gen2]`` to ``DIR/gc-<pid>.json``
(the signal handler runs on the main thread between bytecodes, so the counts are consistent).
"""

from __future__ import annotations

import gc
import json
import os
import runpy
import signal
import sys
import time
from pathlib import Path
from typing import Any


def stats_file(directory: Path, pid: int) -> Path:
    return directory / f"gc-{pid}.json"


def snapshot(directory: Path, pid: int, timeout: float = 10.0) -> list[int] | None:
    """The collections process ``pid`` has run so far, or ``None`` when it does not answer (not wrapped)."""
    path = stats_file(directory, pid)
    path.unlink(missing_ok=True)
    os.kill(pid, signal.SIGUSR1)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and (text := path.read_text()):
            counts: list[int] = json.loads(text)
            return counts
        time.sleep(0.02)
    return None


def main() -> None:
    directory, counts = Path(sys.argv[1]), [0, 0, 0]

    def count(phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            counts[info["generation"]] += 1

    def write(*_: object) -> None:
        partial = stats_file(directory, os.getpid()).with_suffix(".tmp")
        partial.write_text(json.dumps(counts))
        partial.replace(stats_file(directory, os.getpid()))

    gc.callbacks.append(count)
    signal.signal(signal.SIGUSR1, write)
    sys.argv = ["gateway.cli", *sys.argv[2:]]
    runpy.run_module("gateway.cli", run_name="__main__")


if __name__ == "__main__":
    main()
