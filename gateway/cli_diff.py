"""``contracts diff FILE...`` and ``contracts push --dry-run FILE...`` (and the same for policies): what pushing
the files would change, answered by the admin API's dry run (``POST /contracts?dry_run=true``), so the answer
is the registry's own — the same checks, the same "unchanged mints nothing" — and nothing is stored.

A person sees one row per document (``created``, ``new_version`` of the version in force, ``unchanged``) and,
under it, each changed document's JSON-pointer changes (``+`` added, ``-`` removed, ``~`` replaced, values as
compact JSON); ``--json`` prints the admin API's answer. ``diff`` exits 1 when something would change (as
``diff`` and ``git diff --exit-code`` do, so CI can tell a no-op push from a real one), ``push --dry-run`` 0.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import orjson

from gateway.admin.client import AdminClient
from gateway.cli_format import colour_wanted, table
from gateway.cli_support import field, print_json

SIGNS = {"add": "+", "remove": "-", "replace": "~"}
MAX_VALUE = 200
"""Longest value shown in a change line (a whole schema added is cut; ``--json`` has it all)."""


def add_diff_command(
    actions: argparse._SubParsersAction[argparse.ArgumentParser], admin: argparse.ArgumentParser
) -> None:
    diff = actions.add_parser(
        "diff", parents=[admin], help="what pushing these files would change, storing nothing (exit 1 if anything)"
    )
    diff.add_argument("files", type=Path, nargs="+", metavar="FILE", help="documents (JSON or YAML)")


def wants_dry_run(args: argparse.Namespace) -> bool:
    return bool(args.action == "diff" or (args.action == "push" and args.dry_run))


def _value(value: Any) -> str:
    text = orjson.dumps(value).decode()
    return text if len(text) <= MAX_VALUE else text[: MAX_VALUE - 1] + "…"


def change_line(change: dict[str, Any]) -> str:
    """``~ /path: old -> new``, ``+ /path: new``, ``- /path: old`` (``/`` for the whole document)."""
    where = f"{SIGNS.get(change.get('op', ''), '?')} {change.get('path') or '/'}: "
    if change.get("op") == "replace":
        return where + f"{_value(change.get('old'))} -> {_value(change.get('value'))}"
    return where + _value(change.get("value") if change.get("op") == "add" else change.get("old"))


def plan_text(documents: Sequence[dict[str, Any]], colour: bool) -> str:
    rows = [(d["id"], d["change"], d.get("active_version")) for d in documents]
    parts = [table(("id", "change", "active"), rows, colour)]
    for document in documents:
        if document["change"] != "unchanged" and document["changes"]:
            lines = "\n".join("  " + change_line(change) for change in document["changes"])
            parts.append(f"{document['id']}:\n{lines}")
    return "\n\n".join(parts)


async def show_dry_run(args: argparse.Namespace, admin: AdminClient, documents: list[dict[str, Any]]) -> int:
    """Ask the admin API what registering ``documents`` would do, print it; the exit status (see above)."""
    query = "?dry_run=true" + ("" if getattr(args, "activate", True) else "&activate=false")
    answer = await admin.request("POST", f"/{args.collection}{query}", body={args.collection: documents})
    planned = field(answer, "documents")
    if args.json:
        print_json(answer)
    else:
        print(plan_text(planned, colour_wanted()))
    changed = any(d["change"] != "unchanged" for d in planned)
    return 1 if changed and args.action == "diff" else 0
