"""Operating a running gateway from the command line: the dead-letter queue, circuit breakers, failure stats.

Each verb is one admin API call (see ``gateway/admin/resilience.py`` and ``runs.py``); a table by default, the
admin API's JSON with ``--json``; failures are one line (``gateway/cli_support.py``).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from gateway.cli_support import admin_client, field, print_json, read_payload


async def _dlq(args: argparse.Namespace) -> int:
    async with admin_client(args) as admin:
        if args.action == "list":
            query = f"?status={args.status}&limit={args.limit}" + (f"&route={args.route}" if args.route else "")
            answer = await admin.request("GET", "/dlq" + query)
            rows = [(i["id"], i["status"], i["reason"], i["route"], i.get("contract") or "-")
                    for i in field(answer, "escalations")]  # fmt: skip
            _show(args, answer, ("id", "status", "reason", "route", "contract"), rows)
        elif args.action == "show":
            print_json(await admin.request("GET", f"/dlq/{args.id}"))
        elif args.action == "resolve":
            body = {"status": args.status, "body": read_payload(args.answer), "note": args.note}
            print_json(await admin.request("POST", f"/dlq/{args.id}/resolve", body=body))
        elif args.action == "replay":
            print_json(await admin.request("POST", f"/dlq/{args.id}/replay"))
        else:
            print_json(await admin.request("POST", f"/dlq/{args.id}/discard", body={"note": args.note}))
    return 0


async def _breakers(args: argparse.Namespace) -> int:
    async with admin_client(args) as admin:
        if args.action == "list":
            answer = await admin.request("GET", "/breakers")
            rows = [(b["name"], b["state"]) for b in field(answer, "breakers")]
            _show(args, answer, ("breaker", "state"), rows)
        else:
            command = {"open": "force-open", "close": "force-close", "reset": "reset"}[args.action]
            print_json(await admin.request("POST", f"/breakers/{args.name}/{command}"))
    return 0


async def _stats(args: argparse.Namespace) -> int:
    async with admin_client(args) as admin:
        answer = await admin.request("GET", f"/stats/failures?window={args.window}")
        rows = [(f["route"], f["category"], f["mode"], f["count"]) for f in field(answer, "failures")]
        _show(args, answer, ("route", "category", "failure mode", "count"), rows)
    return 0


def _show(args: argparse.Namespace, answer: Any, columns: tuple[str, ...], rows: list[tuple[Any, ...]]) -> None:
    """The admin API's JSON with ``--json``; else an aligned table, or a line saying there is nothing."""
    if args.json:
        print_json(answer)
        return
    if not rows:
        print("(none)")
        return
    cells = [tuple(str(value) for value in row) for row in rows]
    widths = [max(len(column), *(len(row[i]) for row in cells)) for i, column in enumerate(columns)]
    for row in (columns, *cells):
        print("  ".join(value.ljust(width) for value, width in zip(row, widths, strict=True)).rstrip())


def add_operation_commands(
    sub: argparse._SubParsersAction[argparse.ArgumentParser], admin_url: argparse.ArgumentParser
) -> None:
    """``dlq``, ``breakers`` and ``stats`` verbs."""
    listing = argparse.ArgumentParser(add_help=False, parents=[admin_url])
    listing.add_argument("--json", action="store_true", help="the admin API's JSON instead of a table")

    dlq = sub.add_parser("dlq", help="the escalation dead-letter queue")
    dlq_actions = dlq.add_subparsers(dest="action", required=True)
    dlq_list = dlq_actions.add_parser("list", parents=[listing], help="escalated handoffs, newest first")
    dlq_list.add_argument("--status", default="pending", choices=("pending", "resolved", "replayed", "discarded"))
    dlq_list.add_argument("--route")
    dlq_list.add_argument("--limit", type=int, default=50)
    dlq_actions.add_parser(
        "show", parents=[admin_url], help="one item, with everything needed to judge it"
    ).add_argument("id")
    resolve = dlq_actions.add_parser("resolve", parents=[admin_url], help="answer with a corrected response")
    resolve.add_argument("id")
    resolve.add_argument("answer", type=Path, help="the corrected answer (JSON, or YAML when named *.yaml/*.yml)")
    resolve.add_argument("--status", type=int, default=200)
    resolve.add_argument("--note")
    dlq_actions.add_parser("replay", parents=[admin_url], help="send the stored request again").add_argument("id")
    discard = dlq_actions.add_parser("discard", parents=[admin_url], help="give up on the item")
    discard.add_argument("id")
    discard.add_argument("--note")
    dlq.set_defaults(run=_dlq)

    breakers = sub.add_parser("breakers", help="circuit breakers")
    breaker_actions = breakers.add_subparsers(dest="action", required=True)
    breaker_actions.add_parser("list", parents=[listing], help="every breaker and its state")
    for action, what in (("open", "force open (fail fast until reset)"), ("close", "force closed (let all through)"),
                         ("reset", "back to closed, counts cleared")):  # fmt: skip
        breaker_actions.add_parser(action, parents=[admin_url], help=what).add_argument("name")
    breakers.set_defaults(run=_breakers)

    stats = sub.add_parser("stats", help="failure statistics")
    stats_actions = stats.add_subparsers(dest="action", required=True)
    failures = stats_actions.add_parser("failures", parents=[listing], help="failures by route and MAST category")
    failures.add_argument("--window", type=int, default=3600, help="seconds back from now (default 3600)")
    stats.set_defaults(run=_stats)
