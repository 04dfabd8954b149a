"""Running a fuzz campaign against one agent: send, judge with the gateway's validators, search, shrink, report.

The search is hypothesis's own: :func:`hypothesis.find` over the generated valid requests, with the database off
and the random source seeded by ``--seed``, so a run is repeatable and every failure it reports is the minimal
request hypothesis's shrinker reaches (optional members gone, strings and arrays as short as the bug allows).
After each failure the search runs again for a *different* one (up to :data:`MAX_FAILURES`), so one bug does not
hide another. Boundary and near-valid cases are each one change from the minimal valid request, so they are
minimal by construction.

``find`` is synchronous and sending is async: the search runs in a worker thread and hands each request to the
event loop (:func:`asyncio.run_coroutine_threadsafe`), which keeps serving meanwhile (the admin API's loop, or
the loopback agents of a test). Each distinct request is sent once: shrinking often retries one it has seen.
The worker threads are the fuzzer's own (:data:`MAX_CONCURRENT_RUNS` of them), never the loop's default pool: a
search waits in its thread as long as the agent takes to answer, and the default pool is where every SQLite
store call runs, so searches there froze the store (and the data plane, the admin API, ``/readyz``) behind a
silent agent.
"""

from __future__ import annotations

import asyncio
import functools
import random
import re
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

import aiohttp
import jsonschema_rs
import orjson
from hypothesis import find
from hypothesis import strategies as st
from hypothesis.errors import NoSuchExample, Unsatisfiable

from gateway import headers
from gateway.config import Limits
from gateway.contracts.document import ContractDocumentError, parse_contract
from gateway.contracts.registry import SchemaResources
from gateway.contracts.validation import CompiledContract, compile_contract
from gateway.fuzz.generate import boundary_cases, encodable, minimal, near_valid_cases, search_settings, valid_values
from gateway.fuzz.report import BODY_SHOWN, CaseKind, FuzzCase, FuzzReport, FuzzViolation, NearValidMode
from gateway.fuzz.subject import Answer, Judgement, Subject
from gateway.outcomes import Verdict

MAX_FAILURES = 3
"""Distinct failures searched for per run: enough to see that there is more than one bug, bounded."""
MAX_ANSWER_BYTES = Limits().max_body_bytes
"""The gateway's default ``limits.max_body_bytes``: a bigger answer is what it refuses (502), so it is a failure
of its own here, not a body cut short and then judged invalid; nothing beyond it is read or kept."""
MAX_CONCURRENT_RUNS = 2
"""Runs that may search at once in one process: each holds one of the fuzzer's threads while it runs."""
_SEARCH_THREADS = ThreadPoolExecutor(max_workers=MAX_CONCURRENT_RUNS, thread_name_prefix="fuzz-search")
T = TypeVar("T")
Sent = Answer | Judgement
"""An answer, or the judgement that there was none (timeout, connection failure)."""


class TargetUnreachable(Exception):
    """Nothing answers at the target URL: no request could be sent at all."""


@dataclass(frozen=True, slots=True)
class FuzzOptions:
    max_examples: int = 100
    """Valid requests hypothesis generates per search (shrinking comes on top; ``seconds`` bounds it all)."""
    seconds: float = 60.0
    seed: int = 0
    near_valid: NearValidMode = "report"
    timeout: float = 10.0
    """Per request: an agent silent for longer is judged ``upstream_timeout``."""


def _signature(judgement: Judgement) -> tuple[Any, ...]:
    """What makes two failures the same bug: the verdict and the (pointer shape, keyword) of each violation."""
    shape = sorted({(re.sub(r"/\d+(?=/|$)", "/*", v.pointer), v.keyword) for v in judgement.violations})
    return (judgement.outcome, judgement.reason if not shape else "", tuple(shape))


def _shown(body: bytes) -> Any:
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        text = body.decode(errors="replace")
        return text if len(text) <= BODY_SHOWN else text[:BODY_SHOWN] + "…"


class _Campaign:
    """One run's state: the target, the send cache, the clock, and what was found."""

    def __init__(self, subject: Subject, target: str, options: FuzzOptions, session: aiohttp.ClientSession) -> None:
        self.subject = subject
        self.url = target.rstrip("/") + subject.path
        self.options = options
        self.session = session
        self.loop = asyncio.get_running_loop()
        self.deadline = time.monotonic() + options.seconds
        self.exhausted = False
        self.answers: dict[bytes, Sent] = {}
        self.counts = {"generated": 0, "boundary": 0, "near-valid": 0}
        self.failures: list[FuzzCase] = []
        self.warnings: list[FuzzCase] = []
        self.seen: set[tuple[Any, ...]] = set()

    def out_of_time(self) -> bool:
        self.exhausted = self.exhausted or time.monotonic() > self.deadline
        return self.exhausted

    async def attempt(self, value: Any, kind: CaseKind) -> Sent | None:
        """The answer to ``value``: the recorded one if it was sent before (also once the budget is spent: a
        failure found just before the end is still replayed and reported), else a new one while the budget
        lasts, else ``None``."""
        body = orjson.dumps(self.subject.envelope(value))
        known = self.answers.get(body)
        if known is not None or self.out_of_time():
            return known
        return await self._send(body, kind)

    async def _send(self, body: bytes, kind: CaseKind) -> Sent:
        """Send one request; a transport failure is judged, never raised, except when nothing has ever answered:
        then the target is unreachable."""
        self.counts[kind] += 1
        request_headers = {"Content-Type": "application/json", "Accept-Encoding": "identity"}
        try:
            async with self.session.request(self.subject.method, self.url, data=body, headers=request_headers) as resp:
                chunks = bytearray()
                async for chunk in resp.content.iter_chunked(1 << 16):
                    chunks += chunk
                    if len(chunks) > MAX_ANSWER_BYTES:
                        break
                verdict = resp.headers.get(headers.VERDICT, "").partition(";")[0].strip() or None
                sent: Sent = (
                    Judgement(Verdict.UPSTREAM_ERROR, False, f"the answer is larger than {MAX_ANSWER_BYTES} bytes")
                    if len(chunks) > MAX_ANSWER_BYTES
                    else Answer(resp.status, resp.content_type, resp.headers.get("Content-Encoding"),
                                bytes(chunks), verdict)
                )  # fmt: skip
        except TimeoutError:
            sent = Judgement(Verdict.UPSTREAM_TIMEOUT, False, f"no answer within {self.options.timeout:g} s")
        except aiohttp.ClientError as exc:
            if not self.answers and isinstance(exc, aiohttp.ClientConnectorError | aiohttp.InvalidURL):
                raise TargetUnreachable(f"cannot reach {self.url}: {exc}") from None
            sent = Judgement(Verdict.UPSTREAM_ERROR, False, f"the connection failed: {exc}")
        self.answers[body] = sent
        return sent

    def case(self, kind: CaseKind, what: str, value: Any, sent: Sent, judgement: Judgement) -> FuzzCase:
        answer = sent if isinstance(sent, Answer) else None
        return FuzzCase(
            kind=kind, what=what, method=self.subject.method, path=self.subject.path,
            request=self.subject.envelope(value), status=answer.status if answer else None,
            response=_shown(answer.body) if answer else None, outcome=judgement.outcome.value,
            gateway_verdict=answer.gateway_verdict if answer else None, reason=judgement.reason,
            violations=[FuzzViolation(**v.as_dict()) for v in judgement.violations],
            violation_count=max(judgement.total, len(judgement.violations)),
        )  # fmt: skip

    def judge(self, sent: Sent) -> Judgement:
        return sent if isinstance(sent, Judgement) else self.subject.judge_valid(sent)

    async def valid(self, kind: CaseKind, what: str, value: Any) -> None:
        """Send a valid request; record a failure unless an equal one (same signature) is already recorded."""
        sent = await self.attempt(value, kind)
        if sent is None:
            return
        judgement = self.judge(sent)
        if not judgement.ok and _signature(judgement) not in self.seen:
            self.seen.add(_signature(judgement))
            self.failures.append(self.case(kind, what, value, sent, judgement))

    def breaks(self, value: Any) -> bool:
        """The search's condition, called in the worker thread: a new kind of failure? (Hypothesis replays the
        failure it found and must get the same answer, or ``find`` raises ``FlakyFailure``: hence
        :meth:`attempt`'s recorded answers outliving the budget.)"""
        sent = asyncio.run_coroutine_threadsafe(self.attempt(value, "generated"), self.loop).result()
        if sent is None:
            return False
        judgement = self.judge(sent)
        return not judgement.ok and _signature(judgement) not in self.seen

    def search(self, strategy: st.SearchStrategy[Any]) -> Any | None:
        """The minimal request of a failure not seen yet, or ``None`` (runs in a worker thread)."""
        try:
            return find(strategy, self.breaks, settings=search_settings(self.options.max_examples),
                        random=random.Random(self.options.seed))  # fmt: skip
        except (NoSuchExample, Unsatisfiable):
            return None

    async def near_valid(self, value: Any, what: str) -> None:
        sent = await self.attempt(value, "near-valid")
        if sent is None or (isinstance(sent, Answer) and self.subject.refused(sent)):
            return
        violations = self.subject.violations(value)
        status = f"with {sent.status}" if isinstance(sent, Answer) else f"with no answer ({sent.reason})"
        reason = f"a request that violates the contract was answered {status}, not refused with a 4xx"
        judgement = Judgement(Verdict.REQUEST_INVALID, False, reason, violations, len(violations))
        found = self.case("near-valid", what, value, sent, judgement)
        (self.failures if self.options.near_valid == "require" else self.warnings).append(found)


def _member_minimal(seed: int) -> Callable[[Any], Any]:
    def simplest(schema: Any) -> Any:
        try:
            return minimal(valid_values(schema, encodable), seed)
        except ValueError:
            return None

    return simplest


async def _in_thread(fn: Callable[..., T], *args: Any) -> T:
    """``fn(*args)`` in one of the fuzzer's own threads (see the module's docstring for why not the default)."""
    return await asyncio.get_running_loop().run_in_executor(_SEARCH_THREADS, functools.partial(fn, *args))


async def run_fuzz(contract: CompiledContract, target: str, options: FuzzOptions) -> FuzzReport:
    """Fuzz the agent at ``target`` (the operation's path is appended) against ``contract``. Raises
    ``ValueError`` when the contract has nothing to fuzz or its request schema cannot be generated from, and
    :class:`TargetUnreachable` when the first request finds nobody listening."""
    subject = Subject(contract)
    strategy = valid_values(subject.schema, subject.accepts)
    base = await _in_thread(minimal, strategy, options.seed)
    started = time.monotonic()
    timeout = aiohttp.ClientTimeout(total=options.timeout)
    async with aiohttp.ClientSession(timeout=timeout, auto_decompress=False) as client:
        campaign = _Campaign(subject, target, options, client)
        await campaign.valid("boundary", "the minimal valid request", base)
        for _ in range(MAX_FAILURES):
            found = await _in_thread(campaign.search, strategy)
            if found is None:
                break
            await campaign.valid("generated", "shrunk by hypothesis", found)
            if campaign.out_of_time():
                break
        edges = await _in_thread(boundary_cases, subject.schema, base, _member_minimal(options.seed), subject.accepts)
        for edge in edges:
            await campaign.valid("boundary", edge.what, edge.value)
        if options.near_valid != "off":
            for mutant in near_valid_cases(subject.schema, base, subject.accepts):
                await campaign.near_valid(mutant.value, mutant.what)
    return FuzzReport(
        contract=contract.id, version=contract.version, target=target, seed=options.seed,
        max_examples=options.max_examples, seconds=options.seconds, near_valid=options.near_valid,
        sent=len(campaign.answers), generated=campaign.counts["generated"], boundary=campaign.counts["boundary"],
        near_valid_sent=campaign.counts["near-valid"], budget_exhausted=campaign.exhausted,
        elapsed_seconds=round(time.monotonic() - started, 3), failures=campaign.failures, warnings=campaign.warnings,
    )  # fmt: skip


def compile_document(document: dict[str, Any], version: int = 0) -> CompiledContract:
    """A contract document (a file, or a version the admin API returned) compiled as the registry compiles it,
    with the shared schemas it publishes; raises ``ContractDocumentError`` (a ``ValueError``) when it is not a
    valid contract or does not compile."""
    spec = parse_contract(document)
    resources = SchemaResources(spec.shared_schemas)
    try:
        return compile_contract(spec, version, resources.for_rust, resources.registry)
    except (ValueError, jsonschema_rs.ValidationError, jsonschema_rs.ReferencingError) as exc:
        raise ContractDocumentError(f"contract {spec.id!r} does not compile: {exc}", []) from exc
