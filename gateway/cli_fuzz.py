"""``agent-gateway contracts fuzz ID --against URL``: hold an agent to its contract before production does.

The contract comes from a file (``--file``: no gateway needed) or from the admin API (the version in force, or
``--version``). ``URL`` is where the operation's path is appended: the agent itself, or a gateway's data URL
with the route's prefix (its ``X-Contract-Verdict`` is then reported too). Exit status: 0 when every answer met
the contract, 1 on a breach (or when nothing answers at ``URL``), 2 on a usage error, in one line.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

import orjson
from yarl import URL

from gateway.admin.fuzz import MISSING_EXTRAS
from gateway.cli_support import CommandError, admin_client, field, json_ready, print_json, read_bytes
from gateway.contracts.document import load_document_text
from gateway.contracts.validation import CompiledContract
from gateway.fuzz.report import junit_xml, render_text


def target_url(value: str) -> str:
    """An http(s) URL with a host, or a one-line usage error."""
    try:
        url = URL(value)
    except ValueError:
        url = URL()
    if url.scheme not in ("http", "https") or not url.host:
        raise CommandError(f"--against {value!r}: expected an http(s) URL with a host", 2)
    return value


async def _contract(args: argparse.Namespace, compile_document: Callable[..., CompiledContract]) -> CompiledContract:
    if args.file is not None:
        document = dict(json_ready(load_document_text(read_bytes(args.file), source=str(args.file)), args.file))
        if document.get("id") != args.id:
            raise CommandError(f"{args.file}: holds contract {document.get('id')!r}, not {args.id!r}", 2)
        return compile_document(document, args.version or 0)
    suffix = f"/versions/{args.version}" if args.version else ""
    async with admin_client(args) as admin:
        stored = await admin.request("GET", f"/contracts/{args.id}{suffix}")
    return compile_document(dict(field(stored, "document")), int(field(stored, "version")))


async def fuzz_command(args: argparse.Namespace) -> int:
    target = target_url(args.against)
    try:
        from gateway.fuzz import run
    except ImportError:
        raise CommandError(MISSING_EXTRAS, 2) from None
    contract = await _contract(args, run.compile_document)
    options = run.FuzzOptions(max_examples=args.max_examples, seconds=args.seconds, seed=args.seed,
                          near_valid=args.near_valid, timeout=args.timeout)  # fmt: skip
    try:
        report = await run.run_fuzz(contract, target, options)
    except run.TargetUnreachable as exc:
        raise CommandError(str(exc), 1) from None
    except ValueError as exc:
        raise CommandError(str(exc), 2) from None
    if args.json:
        print_json(orjson.loads(report.model_dump_json()))
    else:
        print(render_text(report), end="")
    if args.junit is not None:
        try:
            args.junit.write_bytes(junit_xml(report))
        except OSError as exc:
            raise CommandError(f"{args.junit}: cannot write it: {exc.strerror or exc}", 2) from None
    return 0 if report.clean else 1


def _positive(kind: type[int] | type[float]) -> Callable[[str], float]:
    def parse(text: str) -> float:
        value = kind(text)
        if value <= 0:
            raise argparse.ArgumentTypeError(f"must be positive, got {text}")
        return value

    return parse


def add_fuzz_command(
    actions: argparse._SubParsersAction[argparse.ArgumentParser], admin_url: argparse.ArgumentParser
) -> None:
    """``contracts fuzz``, next to the other ``contracts`` actions."""
    fuzz = actions.add_parser(
        "fuzz",
        parents=[admin_url],
        help="send generated requests to an agent and check its answers (exit 1 on a breach)",
    )
    fuzz.add_argument("id", help="the contract id")
    fuzz.add_argument("--against", required=True, metavar="URL", help="agent base URL (or gateway URL + route prefix)")
    fuzz.add_argument("--file", type=Path, help="read the contract from this file instead of the admin API")
    fuzz.add_argument("--version", type=_positive(int), help="a stored version instead of the one in force")
    fuzz.add_argument("--max-examples", type=_positive(int), default=100, help="generated requests per search (100)")
    fuzz.add_argument("--seconds", type=_positive(float), default=60.0, help="time budget for the whole run (60)")
    fuzz.add_argument("--seed", type=int, default=0, help="same seed, same requests (0)")
    fuzz.add_argument(
        "--near-valid", choices=("require", "report", "off"), default="report",
        help="near-valid requests must get a 4xx (require), are reported (report, the default) or not sent (off)",
    )  # fmt: skip
    fuzz.add_argument("--timeout", type=_positive(float), default=10.0, help="seconds to wait for each answer (10)")
    fuzz.add_argument("--junit", type=Path, metavar="PATH", help="also write JUnit XML here")
    fuzz.add_argument("--json", action="store_true", help="print the report as JSON")
    fuzz.set_defaults(run=fuzz_command)
