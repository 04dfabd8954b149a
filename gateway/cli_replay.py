"""``agent-gateway runs replay RUN_ID --against URL``: a regression test from production traffic.

A recorded run's requests are sent again, one by one, to a new version of an agent, and each new answer is judged
against the *same contract version* that judged the recorded one (through the admin API's dry run, so the
verdict is the data plane's). The table shows each handoff's verdict then and now; the command exits 1 when any
handoff got worse (valid → invalid), so it can gate a deployment.

What can be replayed is what the audit trail kept: request bodies only when the gateway ran with
``audit.payloads: true`` (otherwise the command says so and exits 2), with the values at ``audit.redact``
pointers replaced by ``"[redacted]"`` (those members are removed and listed: the request is sent without them),
and no request headers at all (``--header NAME:VALUE`` adds the ones the agent needs, e.g. its credentials).
Answers are asked for uncompressed (``Accept-Encoding: identity``), as the gateway asks, so what is judged is
what the agent would have relayed.
Handoffs the agent never saw (``request_invalid``, ``stale_context``, ``breaker_open``) and uncontracted ones are
listed as skipped.
"""

from __future__ import annotations

import argparse
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import aiohttp
import orjson

from gateway.admin.client import AdminClient
from gateway.cli_support import CommandError, admin_client, field, print_json
from gateway.config import Limits
from gateway.dataplane.transport import read_limited
from gateway.errors import UpstreamPayloadTooLarge
from gateway.headers import RUN, STEP
from gateway.jsonpointer import markers, tokens
from gateway.outcomes import Verdict

NOT_CALLED = frozenset({Verdict.REQUEST_INVALID, Verdict.STALE_CONTEXT, Verdict.BREAKER_OPEN})
"""Verdicts of handoffs the agent never received: nothing to compare a new answer with."""
SENT = ("Content-Type", RUN, STEP, "Accept-Encoding: identity")
"""What every replayed request carries besides ``--header``: the audit trail keeps no request headers."""
GOOD: Mapping[str, int] = {Verdict.VALID: 0, Verdict.UNCHECKED: 1}
"""How good a verdict is (lower is better); every failing verdict ranks below both."""


@dataclass(frozen=True, slots=True)
class Outcome:
    """One handoff replayed (or skipped, with ``skipped`` saying why)."""

    number: int
    step: str
    old: str
    new: str | None = None
    status: int | None = None
    detail: str = ""
    removed: tuple[str, ...] = ()
    """Pointers of redacted members the request was sent without."""
    skipped: str | None = None

    @property
    def change(self) -> str:
        if self.new is None:
            return "skipped"
        old, new = GOOD.get(self.old, 2), GOOD.get(self.new, 2)
        return "worse" if new > old else "better" if new < old else "same"


def final_attempts(records: Iterable[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """One record per handoff: the last attempt of each request (retried attempts share its trace id, start
    time and step), in the order the run made them."""
    last: dict[tuple[Any, ...], Mapping[str, Any]] = {}
    for record in records:
        key = (record["trace_id"], record["started_at"], record["step"])
        if key not in last or record["attempt"] > last[key]["attempt"]:
            last[key] = record
    return sorted(last.values(), key=lambda r: r["started_at"])


def without_redacted(payload: Any) -> tuple[Any, tuple[str, ...]]:
    """``payload`` with every ``"[redacted]"`` value's member (or item) removed, and the pointers removed."""
    found = markers(payload)
    if "" in found:  # the whole body was redacted: nothing of it is left to send
        return None, ("",)
    document = orjson.loads(orjson.dumps(payload))  # a copy to edit
    for pointer in reversed(found):  # later items first, so earlier array indices stay right
        *parents, last = tokens(pointer)
        node = document
        for token in parents:
            node = node[int(token)] if isinstance(node, list) else node[token]
        del node[int(last) if isinstance(node, list) else last]
    return document, tuple(found)


def _first_violation(result: Mapping[str, Any]) -> str:
    violations = result.get("violations") or []
    if not violations:
        return ""
    first, more = violations[0], int(result.get("violation_count", 1)) - 1
    return f"{first['pointer'] or '/'} {first['keyword']}: {first['message']}" + (f" (+{more} more)" if more else "")


async def judge(admin: AdminClient, record: Mapping[str, Any], status: int, content_type: str, body: bytes
                ) -> tuple[Verdict, str]:  # fmt: skip
    """The verdict the recorded contract version gives this answer, and the first violation."""
    try:
        payload, parsed = orjson.loads(body), True
    except orjson.JSONDecodeError as exc:
        payload, parsed, unparsed = None, False, f"json: the answer is not JSON ({exc})"
    result = await admin.request(
        "POST", f"/contracts/{record['contract']}/validate",
        body={"direction": "response", "status": status, "version": record["contract_version"],
              "content_type": content_type, "payload": payload},
    )  # fmt: skip
    if not field(result, "checked"):
        verdict = Verdict.UPSTREAM_ERROR if status >= 500 else Verdict.UNCHECKED
        return verdict, f"no schema for status {status}"
    if not parsed:
        return Verdict.RESPONSE_INVALID, unparsed
    return (Verdict.VALID, "") if result["valid"] else (Verdict.RESPONSE_INVALID, _first_violation(result))


@dataclass(frozen=True, slots=True)
class Target:
    """Where and how to send: the new agent's base URL, extra headers, the per-request time limit."""

    url: str
    headers: Mapping[str, str]
    timeout: float


async def replay_one(
    session: aiohttp.ClientSession, admin: AdminClient, target: Target, run_id: str, number: int,
    record: Mapping[str, Any],
) -> Outcome:  # fmt: skip
    """Send one recorded request to the new agent and judge its answer."""
    base = Outcome(number, record["step"], record["verdict"])
    if record.get("contract") is None:
        return _skip(base, "no contract governed it: nothing to judge an answer by")
    if record["verdict"] in NOT_CALLED:
        return _skip(base, f"the agent never received it ({record['verdict']})")
    document, removed = without_redacted(record.get("request_payload"))
    data = None if document is None else orjson.dumps(document)
    headers = {RUN: f"replay-{run_id}", STEP: record["step"], "Accept-Encoding": "identity", **target.headers}
    if data is not None:
        headers.setdefault("Content-Type", "application/json")
    timeout = aiohttp.ClientTimeout(total=target.timeout)
    try:
        async with session.request(
            record["method"], target.url + record["path"], data=data, headers=headers, timeout=timeout
        ) as response:
            status, content_type = response.status, response.content_type
            body = await read_limited(response, MAX_ANSWER_BYTES)
    except UpstreamPayloadTooLarge:
        return _done(base, removed, Verdict.UPSTREAM_ERROR, None, f"the answer is larger than {MAX_ANSWER_BYTES} bytes")
    except TimeoutError:
        return _done(base, removed, Verdict.UPSTREAM_TIMEOUT, None, f"no answer within {target.timeout:g} s")
    except aiohttp.ClientError as exc:
        return _done(base, removed, Verdict.UPSTREAM_ERROR, None, " ".join(str(exc).split()) or type(exc).__name__)
    verdict, detail = await judge(admin, record, status, content_type, body)
    return _done(base, removed, verdict, status, detail)


MAX_ANSWER_BYTES = Limits().max_body_bytes
"""What the gateway would relay at most (its default ``limits.max_body_bytes``): nothing beyond it is read."""


def _skip(base: Outcome, why: str) -> Outcome:
    return Outcome(base.number, base.step, base.old, skipped=why)


def _done(base: Outcome, removed: tuple[str, ...], new: Verdict, status: int | None, detail: str) -> Outcome:
    return Outcome(base.number, base.step, base.old, new.value, status, detail, removed)


def replayable(run_id: str, records: Sequence[Mapping[str, Any]], route: str | None) -> list[Mapping[str, Any]]:
    """The run's handoffs to the agent being replaced; a usage error when that is ambiguous or when the
    gateway did not keep the request payloads."""
    targets = sorted({r["target"] for r in records})
    if route is None and len(targets) > 1:
        raise CommandError(f"run {run_id} has handoffs to {', '.join(targets)}: name the agent with --route", 2)
    chosen = [r for r in records if route is None or r["target"] == route]
    if not chosen:
        raise CommandError(f"run {run_id} has no handoff to route {route!r} (it has {', '.join(targets)})", 2)
    missing = [
        str(i) for i, r in enumerate(chosen, 1)
        if r.get("contract") and r["verdict"] not in NOT_CALLED and r.get("request_payload") is None
        and (r.get("request_bytes") or 0) > 0
    ]  # fmt: skip
    if missing:
        raise CommandError(
            f"run {run_id}: the request payloads of handoff(s) #{', #'.join(missing)} were not recorded; replay "
            "needs a gateway running with audit.payloads: true (AGENT_GATEWAY_AUDIT__PAYLOADS=true)", 2,
        )  # fmt: skip
    return chosen


def render(run_id: str, target: Target, outcomes: Sequence[Outcome]) -> str:
    """The report: one row per handoff, old → new verdict, then what was sent without, then the tally."""
    lines = [f"Replay of run {run_id} against {target.url}: {len(outcomes)} handoff(s)",
             f"  request headers are not recorded by the audit trail: sent with {', '.join(SENT)}"
             + (f", {', '.join(target.headers)}" if target.headers else " only (add more with --header)"),
             f"  {'#':>3}  {'step':<24} {'old':<17} {'new':<17} {'change':<8} detail"]  # fmt: skip
    for o in outcomes:
        new, detail = (o.new or "-"), (o.skipped or o.detail)
        status = f"HTTP {o.status} " if o.status is not None else ""
        lines.append(
            f"  {o.number:>3}  {o.step[:24]:<24} {o.old:<17} {new:<17} {o.change:<8} {status}{detail}".rstrip()
        )
    for o in outcomes:
        if o.removed:
            removed = ", ".join(pointer or "(the whole body)" for pointer in o.removed)
            lines.append(f"  #{o.number} sent without redacted member(s): {removed}")
    changes = [o.change for o in outcomes]
    lines.append(f"Summary: {len(outcomes) - changes.count('skipped')} replayed, {changes.count('worse')} worse, "
                 f"{changes.count('better')} better, {changes.count('skipped')} skipped")  # fmt: skip
    return "\n".join(lines)


def _header(value: str) -> tuple[str, str]:
    name, sep, content = value.partition(":")
    if not sep or not name.strip():
        raise argparse.ArgumentTypeError(f"expected NAME:VALUE, got {value!r}")
    return name.strip(), content.strip()


async def replay(args: argparse.Namespace) -> int:
    target = Target(args.against.rstrip("/"), dict(args.header), args.timeout)
    async with admin_client(args) as admin:
        run = await admin.request("GET", f"/runs/{args.id}")
        records = replayable(args.id, final_attempts(field(run, "handoffs")), args.route)
        async with aiohttp.ClientSession(auto_decompress=False) as session:
            outcomes = [
                await replay_one(session, admin, target, args.id, number, record)
                for number, record in enumerate(records, 1)
            ]
    if args.json:
        print_json([{**asdict(o), "change": o.change} for o in outcomes])
    else:
        print(render(args.id, target, outcomes))
    return 1 if any(o.change == "worse" for o in outcomes) else 0


def add_replay_command(run_actions: argparse._SubParsersAction[argparse.ArgumentParser],
                       admin_url: argparse.ArgumentParser) -> None:  # fmt: skip
    """``runs replay RUN_ID --against URL [--route R] [--header NAME:VALUE]... [--timeout S] [--json]``."""
    parser = run_actions.add_parser(
        "replay", parents=[admin_url],
        help="re-send a recorded run's requests to a new agent version and diff the verdicts (exit 1 if worse)",
    )  # fmt: skip
    parser.add_argument("id", help="the run id (X-Run-Id)")
    parser.add_argument("--against", required=True, help="the new agent's base URL (what the route's upstream is)")
    parser.add_argument("--route", help="replay only the handoffs to this route (required when the run has several)")
    parser.add_argument("--header", type=_header, action="append", default=[], metavar="NAME:VALUE",
                        help="a header to send with every request (recorded runs keep no headers)")  # fmt: skip
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds to wait for each answer (default 60)")
    parser.add_argument("--json", action="store_true", help="the outcomes as JSON")
    parser.set_defaults(run=replay)
