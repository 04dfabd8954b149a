"""``workers: N``: N data-plane processes on one port (``SO_REUSEPORT``, Linux), started and kept by a supervisor.

Why processes: one Python process runs the data path on one core; the kernel spreads new connections over every
socket bound to the port with ``SO_REUSEPORT``, so N processes use N cores with no proxy in front of them.

Who does what:

- **The supervisor** is the process that was started (``agent-gateway serve``). It serves no traffic: it creates a
  private directory for prometheus-client's multiprocess files, starts worker 0, waits until it is serving, then
  starts the others (worker 0 registers the document files first; the others then find them unchanged and mint
  nothing). It restarts a worker that exits with a backoff (:data:`FIRST_BACKOFF` doubling to
  :data:`MAX_BACKOFF`, back to the first after :data:`STEADY` seconds of running), forwards ``SIGHUP`` to worker 0,
  and on ``SIGTERM``/``SIGINT`` drains: workers 1..N-1 first, then worker 0, each finishing its in-flight
  requests as a single gateway does. It exits 0 when every worker drained cleanly, 1 otherwise, and 1 at once when
  a worker cannot start in the first place (a bad setting, a port taken by a socket without ``SO_REUSEPORT``).
- **Every worker** is the same command line run again with :data:`WORKER_VARIABLE` in its environment; it binds the
  data plane with ``SO_REUSEPORT`` and, when the store has no change feed (SQLite), reads the tables every
  ``worker_poll_interval`` (:func:`worker_upkeep`; a versioned registry's ``load`` fetches only the ids whose head
  moved, routes are one small list). With Redis the store's change feed does it, as between sidecars.
- **Worker 0** alone also serves the admin API, the health listener and the directory watcher, so a registration
  happens in exactly one process and reaches the others through the store. Each worker writes its own audit batches
  (see the README for why and the measurement); breakers, retry budgets and per-route concurrency limits are per
  worker.

A worker whose supervisor died (killed with ``SIGKILL``) notices within one poll interval and drains itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import signal
import socket
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass

from prometheus_client.multiprocess import mark_process_dead

from gateway.background import while_serving
from gateway.config import GatewayConfig
from gateway.control.state import STATE, GatewayState
from gateway.observability.metrics import MULTIPROCESS_VARIABLE
from gateway.store.base import ChangeFeed, cancel_requested

log = logging.getLogger("agent_gateway.workers")

WORKER_VARIABLE = "_AGENT_GATEWAY_WORKER"
"""``<index>:<fd>`` in a worker's environment: which worker it is, and the pipe it reports "serving" on. Not
spelled ``AGENT_GATEWAY_*``: that prefix is reserved for settings, and an unknown one is a configuration error."""
READY = b"serving"
FIRST_BACKOFF = 0.5
"""Seconds before restarting a worker that exited; doubled for each exit in a row, up to :data:`MAX_BACKOFF`."""
MAX_BACKOFF = 30.0
STEADY = 60.0
"""A worker that ran this many seconds before exiting is restarted after :data:`FIRST_BACKOFF` again."""


@dataclass(frozen=True, slots=True)
class Worker:
    index: int
    ready_fd: int


def this_worker() -> Worker | None:
    """This process's place in a fleet, or ``None`` when it is not a worker (``workers: 1``, or the supervisor)."""
    value = os.environ.get(WORKER_VARIABLE)
    if not value:
        return None
    index, ready_fd = value.split(":")
    return Worker(int(index), int(ready_fd))


def is_primary() -> bool:
    """Whether this process serves the admin API, the health listener and the watcher: worker 0, or the only one."""
    worker = this_worker()
    return worker is None or worker.index == 0


class _Tagged(logging.Filter):
    """Adds ``worker`` to every log record (a JSON line carries it), so a line says which process wrote it."""

    def __init__(self, index: int) -> None:
        super().__init__()
        self.index = index

    def filter(self, record: logging.LogRecord) -> bool:
        record.worker = self.index
        return True


def join_fleet() -> bool:
    """In a worker: tag its log lines and return true. Elsewhere false: the caller is to supervise."""
    worker = this_worker()
    if worker is None:
        return False
    for handler in logging.getLogger().handlers:
        handler.addFilter(_Tagged(worker.index))
    return True


def announce_ready() -> None:
    """Tell the supervisor this worker is serving (a no-op outside a fleet)."""
    worker = this_worker()
    if worker is not None:
        os.write(worker.ready_fd, READY)
        os.close(worker.ready_fd)


async def _read_tables(state: GatewayState) -> None:
    await state.routes.load()
    await state.contracts.load()
    await state.policies.load()


async def _upkeep(state: GatewayState) -> None:
    """Every ``worker_poll_interval``: tables changed by worker 0 (no change feed), the shared metric readings,
    and whether the supervisor is still there."""
    supervisor = os.getppid()
    polling = not isinstance(state.store, ChangeFeed)
    failing = False
    while not cancel_requested():
        await asyncio.sleep(state.config.worker_poll_interval)
        if os.getppid() != supervisor:
            log.warning("the supervisor (pid %d) is gone: draining", supervisor)
            os.kill(os.getpid(), signal.SIGTERM)
            return
        state.metrics.sample()
        try:
            if polling:
                await _read_tables(state)
        except Exception as exc:  # the store is down: serve the tables in force, say so once
            if not failing:
                log.warning("reading changed tables from the store failed (%s); retrying every poll", exc)
            failing = True
        else:
            failing = False


worker_upkeep = while_serving("worker-upkeep", lambda app: _upkeep(app[STATE]))
"""The data plane's cleanup context with ``workers > 1``: :func:`_upkeep` runs exactly as long as it does."""


class Supervisor:
    """Starts ``config.workers`` copies of ``command`` and keeps them running until told to stop."""

    def __init__(self, config: GatewayConfig, command: Sequence[str]) -> None:
        self._count = config.workers
        self._command = list(command)
        self._stopping = asyncio.Event()
        self._processes: dict[int, asyncio.subprocess.Process] = {}
        self._started: dict[int, float] = {}
        self._shared = tempfile.mkdtemp(prefix="agent-gateway-metrics-")

    async def _spawn(self, index: int) -> bool:
        """Start worker ``index``; true once it reports serving, false if it exited first."""
        read_fd, write_fd = os.pipe()
        env = {**os.environ, MULTIPROCESS_VARIABLE: self._shared, WORKER_VARIABLE: f"{index}:{write_fd}"}
        try:
            process = await asyncio.create_subprocess_exec(
                *self._command, env=env, pass_fds=(write_fd,), start_new_session=True
            )  # its own process group: a terminal's Ctrl-C reaches the supervisor only, which drains in order
        finally:
            os.close(write_fd)
        self._processes[index], self._started[index] = process, time.monotonic()
        log.info("worker %d started (pid %d)", index, process.pid)
        try:
            return await asyncio.to_thread(os.read, read_fd, len(READY)) == READY  # b"" (EOF): it exited
        finally:
            os.close(read_fd)

    async def _keep(self, index: int) -> int | None:
        """Restart worker ``index`` whenever it exits, until stopping; then its exit status (``None``: none ran)."""
        delay = FIRST_BACKOFF
        while True:
            process = self._processes[index]
            status = await process.wait()
            # its live gauges (in-flight, breaker states) leave the fleet's sums
            mark_process_dead(process.pid, self._shared)  # type: ignore[no-untyped-call]
            if self._stopping.is_set():
                return status
            if time.monotonic() - self._started[index] >= STEADY:
                delay = FIRST_BACKOFF
            log.warning("worker %d (pid %d) exited with status %d; restart in %g s", index, process.pid, status, delay)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), delay)
            if self._stopping.is_set():
                return None
            delay = min(delay * 2, MAX_BACKOFF)
            await self._spawn(index)

    async def _drain(self, keepers: dict[int, asyncio.Task[int | None]]) -> int:
        """Stop workers 1..N-1, then worker 0 (it serves the admin API and health until the others are done)."""
        statuses: list[int | None] = []
        for group in ([i for i in keepers if i != 0], [0]):
            for index in group:
                with contextlib.suppress(ProcessLookupError):
                    self._processes[index].send_signal(signal.SIGTERM)
            statuses += await asyncio.gather(*(keepers[i] for i in group))
        failed = [status for status in statuses if status not in (0, None)]
        if failed:
            log.error("%d worker(s) did not drain cleanly: exit statuses %s", len(failed), failed)
        return 1 if failed else 0

    def _hangup(self) -> None:
        process = self._processes.get(0)
        if process is not None and process.returncode is None:
            process.send_signal(signal.SIGHUP)

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, self._stopping.set)
        loop.add_signal_handler(signal.SIGHUP, self._hangup)
        try:
            for index in range(self._count):  # worker 0 first: see the module docstring
                if not await self._spawn(index):
                    log.error("worker %d exited before serving; stopping the others", index)
                    self._stopping.set()
                    await self._drain({i: asyncio.create_task(self._keep(i)) for i in self._processes})
                    return 1
            log.info("serving with %d workers", self._count)
            keepers = {index: asyncio.create_task(self._keep(index)) for index in range(self._count)}
            await self._stopping.wait()
            log.info("draining %d workers", self._count)
            return await self._drain(keepers)
        finally:
            shutil.rmtree(self._shared, ignore_errors=True)


async def supervise(config: GatewayConfig) -> int:
    """Run ``config.workers`` workers of this very command line (``sys.orig_argv``) until stopped; 2 when the
    settings cannot work with several processes."""
    if not hasattr(socket, "SO_REUSEPORT"):
        log.error("workers > 1 needs SO_REUSEPORT (Linux); set workers: 1 here")
        return 2
    if config.listen.port == 0:
        log.error("workers > 1 needs a fixed listen.port: with port 0 every worker would bind a port of its own")
        return 2
    return await Supervisor(config, sys.orig_argv).run()
