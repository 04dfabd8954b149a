"""Operating a running gateway from the command line: the dead-letter queue, circuit breakers, failure stats.

Each verb is one admin API call (see ``gateway/admin/resilience.py`` and ``runs.py``); a table by default, the
admin API's JSON with ``--json``; failures are one line (``gateway/cli_support.py``).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import orjson

from gateway.cli_format import colour_wanted, details, show, table, when
from gateway.cli_support import admin_client, field, print_json, read_payload

ITEM_FIELDS = ("id", "status", "reason", "route", "method", "path", "run_id", "trace_id", "attempts", "contract",
               "contract_version", "upstream_status")  # fmt: skip
"""What a person reads first about an escalated handoff, before its violations and bodies."""


def _item(args: argparse.Namespace, item: Any) -> None:
    """One escalation: its facts, its violations, then the request and the agent's answer as JSON."""
    if args.json:
        print_json(item)
        return
    colour = colour_wanted()
    print(details([(name, item.get(name)) for name in ITEM_FIELDS] + [("created", when(item.get("created_at")))],
                  colour))  # fmt: skip
    if item.get("violations"):
        rows = [(v.get("pointer") or "/", v.get("keyword"), v.get("message")) for v in item["violations"]]
        print("\n" + table(("pointer", "keyword", "message"), rows, colour))
    for name in ("request", "upstream", "resolution"):
        if item.get(name) is not None:
            print(f"\n{name}:\n" + orjson.dumps(item[name], option=orjson.OPT_INDENT_2).decode())


async def _dlq(args: argparse.Namespace) -> int:
    async with admin_client(args) as admin:
        if args.action == "list":
            query = f"?status={args.status}&limit={args.limit}" + (f"&route={args.route}" if args.route else "")
            answer = await admin.request("GET", "/dlq" + query)
            rows = [(i["id"], i["status"], i["reason"], i["route"], i.get("contract"), when(i.get("created_at")))
                    for i in field(answer, "escalations")]  # fmt: skip
            show(args, answer, ("id", "status", "reason", "route", "contract", "created"), rows)
        elif args.action == "show":
            _item(args, await admin.request("GET", f"/dlq/{args.id}"))
        elif args.action == "resolve":
            body = {"status": args.status, "body": read_payload(args.answer), "note": args.note}
            _item(args, await admin.request("POST", f"/dlq/{args.id}/resolve", body=body))
        elif args.action == "replay":
            _item(args, await admin.request("POST", f"/dlq/{args.id}/replay"))
        else:
            _item(args, await admin.request("POST", f"/dlq/{args.id}/discard", body={"note": args.note}))
    return 0


BREAKER_COLUMNS = ("name", "state", "calls_in_window", "failure_rate", "slow_call_rate", "consecutive_failures")


async def _breakers(args: argparse.Namespace) -> int:
    async with admin_client(args) as admin:
        if args.action == "list":
            answer = await admin.request("GET", "/breakers")
            breakers = field(answer, "breakers")
        else:
            command = {"open": "force-open", "close": "force-close", "reset": "reset"}[args.action]
            answer = await admin.request("POST", f"/breakers/{args.name}/{command}")
            breakers = [answer]
        rows = [[b.get(column) for column in BREAKER_COLUMNS] for b in breakers]
        show(args, answer, ("breaker", "state", "calls", "failure rate", "slow rate", "consecutive"), rows)
    return 0


async def _stats(args: argparse.Namespace) -> int:
    async with admin_client(args) as admin:
        answer = await admin.request("GET", f"/stats/failures?window={args.window}")
        rows = [(f["route"], f["category"], f["mode"], f["count"]) for f in field(answer, "failures")]
        show(args, answer, ("route", "category", "failure mode", "count"), rows)
    return 0


def add_operation_commands(
    sub: argparse._SubParsersAction[argparse.ArgumentParser], admin: argparse.ArgumentParser
) -> None:
    """``dlq``, ``breakers`` and ``stats`` verbs; ``admin`` is the parent with ``--admin-url`` and ``--json``."""
    dlq = sub.add_parser("dlq", help="the escalation dead-letter queue")
    dlq_actions = dlq.add_subparsers(dest="action", required=True, metavar="ACTION")
    dlq_list = dlq_actions.add_parser("list", parents=[admin], help="escalated handoffs, newest first")
    dlq_list.add_argument("--status", default="pending", choices=("pending", "resolved", "replayed", "discarded"),
                          help="items in this status (default pending)")  # fmt: skip
    dlq_list.add_argument("--route", help="only items of this route")
    dlq_list.add_argument("--limit", type=int, default=50, help="how many items (default 50)")
    item_help = "the escalation id (from dlq list)"
    dlq_actions.add_parser("show", parents=[admin], help="one item, with everything needed to judge it").add_argument(
        "id", help=item_help
    )
    resolve = dlq_actions.add_parser("resolve", parents=[admin], help="answer with a corrected response")
    resolve.add_argument("id", help=item_help)
    resolve.add_argument("answer", type=Path, help="the corrected answer (JSON, or YAML when named *.yaml/*.yml)")
    resolve.add_argument("--status", type=int, default=200, help="the answer's HTTP status (default 200)")
    resolve.add_argument("--note", help="why, for the audit trail")
    dlq_actions.add_parser("replay", parents=[admin], help="send the stored request again").add_argument(
        "id", help=item_help
    )
    discard = dlq_actions.add_parser("discard", parents=[admin], help="give up on the item")
    discard.add_argument("id", help=item_help)
    discard.add_argument("--note", help="why, for the audit trail")
    dlq.set_defaults(run=_dlq)

    breakers = sub.add_parser("breakers", help="circuit breakers")
    breaker_actions = breakers.add_subparsers(dest="action", required=True, metavar="ACTION")
    breaker_actions.add_parser("list", parents=[admin], help="every breaker and its state")
    for action, what in (("open", "force open (fail fast until reset)"), ("close", "force closed (let all through)"),
                         ("reset", "back to closed, counts cleared")):  # fmt: skip
        breaker = breaker_actions.add_parser(action, parents=[admin], help=what)
        breaker.add_argument("name", help="the breaker name (from breakers list), e.g. route:agent")
    breakers.set_defaults(run=_breakers)

    stats = sub.add_parser("stats", help="failure statistics")
    stats_actions = stats.add_subparsers(dest="action", required=True, metavar="ACTION")
    failures = stats_actions.add_parser("failures", parents=[admin], help="failures by route and MAST category")
    failures.add_argument("--window", type=int, default=3600, help="seconds back from now (default 3600)")
    stats.set_defaults(run=_stats)
