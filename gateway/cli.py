"""The ``agent-gateway`` command: ``serve``, ``demo``, and, against a running gateway's admin API, ``contracts``,
``policies``, ``routes``, ``runs``, ``dlq``, ``breakers`` and ``stats``; ``completion`` prints a shell script.

Every listing and record prints as a table for a person (coloured on a terminal unless NO_COLOR is set) and as the
admin API's JSON with ``--json``.

Failures are one line on stderr, never a traceback. Exit status 2 is a usage error (bad settings, a bad admin URL,
a missing or unreadable input file, a refusal from the admin API); 1 is a runtime failure (the gateway cannot
bind or open its store, the admin URL answers nothing or something that is not the admin API).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import importlib.metadata
import logging
import os
import signal
import sqlite3
import sys
from collections.abc import Callable, Coroutine, Sequence
from pathlib import Path
from typing import Any, NoReturn, cast

import aiohttp
import yaml

from gateway.admin.client import AdminAPIError, AdminUnavailable, AdminURLError
from gateway.app import start_gateway
from gateway.cli_completion import add_completion_command
from gateway.cli_diff import add_diff_command, show_dry_run, wants_dry_run
from gateway.cli_format import add_json_option, colour_wanted, details, paint, show, table, when
from gateway.cli_fuzz import add_fuzz_command
from gateway.cli_operations import add_operation_commands
from gateway.cli_runs import add_runs_commands
from gateway.cli_support import (
    CommandError,
    admin_client,
    field,
    json_ready,
    print_json,
    read_bytes,
    read_payload,
)
from gateway.config import ConfigError, load_config, retired_variables
from gateway.contracts.document import ContractDocumentError, load_document_text
from gateway.errors import GatewayError
from gateway.observability.logs import configure_logging
from gateway.protocols.mcp_import import ImportFailed, contracts_from_tools, list_tools
from gateway.workers import announce_ready, join_fleet, supervise

REPO = Path(__file__).resolve().parent.parent


def _startup_errors() -> tuple[type[Exception], ...]:
    """What start-up raises when it cannot bind or reach its store: the store's own ``GatewayError``
    (``StoreUnavailable``) or the driver's error (the redis client is an optional dependency)."""
    try:
        from redis.exceptions import RedisError
    except ImportError:
        return (OSError, sqlite3.Error, GatewayError)
    return (OSError, sqlite3.Error, GatewayError, RedisError)


def _event_loop_policy() -> None:
    """uvloop when installed: roughly a third more throughput on the data path."""
    with contextlib.suppress(ImportError):
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())


async def _serve(args: argparse.Namespace) -> int:
    overrides: dict[str, Any] = {}
    if args.host or args.port is not None:
        overrides["listen"] = {k: v for k, v in (("host", args.host), ("port", args.port)) if v is not None}
    config = load_config(args.config, overrides=overrides)
    configure_logging(config.log_level, config.log_format)
    for warning in retired_variables(os.environ):
        logging.getLogger("agent_gateway").warning(warning)
    if config.workers > 1 and not join_fleet():  # this process supervises; each worker runs this command again
        return await supervise(config)
    try:
        gateway = await start_gateway(config, insecure_admin=args.insecure_admin)
    except _startup_errors() as exc:
        raise CommandError(f"cannot start: {exc}", 1) from None
    gc.freeze()  # everything loaded at start-up lives forever: keep it out of every future collection
    logging.getLogger("agent_gateway").info(
        "serving data plane on %s:%d, admin API %s", config.listen.host, gateway.data_port,
        f"on {gateway.admin_url}" if gateway.admin_url else "disabled",
    )  # fmt: skip
    announce_ready()  # a worker tells its supervisor
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    loop.add_signal_handler(signal.SIGHUP, gateway.rescan)  # read contract_dirs/policy_dirs again now
    await stop.wait()
    await gateway.close()
    return 0


async def _demo(args: argparse.Namespace) -> int:
    from gateway.demo.pipeline import run_demo

    logging.basicConfig(level=logging.ERROR)
    return await run_demo(args.contracts, args.policies)


def _read_document(path: Path) -> dict[str, Any]:
    return dict(json_ready(load_document_text(read_bytes(path), source=str(path)), path))


def _registered(args: argparse.Namespace, answer: Any) -> None:
    """What a push or an activation changed: one row per stored version."""
    items = field(answer, "registered") if "registered" in answer else [answer]
    show(args, answer, ("id", "version", "active"), [(i["id"], i["version"], i["active"]) for i in items])


def _document(args: argparse.Namespace, stored: Any) -> None:
    """One stored version: its identity, then the document itself as YAML (what a person wrote)."""
    if args.json:
        print_json(stored)
        return
    document = field(stored, "document")
    summary = [(n, stored[n]) for n in ("id", "version", "active")] + [("created", when(stored["created_at"]))]
    print(details(summary, colour_wanted()) + "\n\n" + yaml.safe_dump(document, sort_keys=False).rstrip())


def _validated(args: argparse.Namespace, result: Any) -> int:
    """A dry run's verdict; exit 0 when valid, 1 otherwise (so scripts can branch on it)."""
    valid = field(result, "valid") is True
    if args.json:
        print_json(result)
    else:
        verdict = ("valid" if result["checked"] else "unchecked") if valid else "invalid"
        print(f"{result['contract']} v{result['version']} {result['direction']}: "
              f"{paint(verdict, 0, colour_wanted())}")  # fmt: skip
        if result["violations"]:
            rows = [(v["pointer"] or "/", v["keyword"], v["message"]) for v in result["violations"]]
            print(table(("pointer", "keyword", "message"), rows, colour_wanted()))
    return 0 if valid else 1


async def _documents(args: argparse.Namespace) -> int:
    """``contracts`` and ``policies``: the same verbs on either collection (plus ``validate`` for contracts)."""
    base = f"/{args.collection}"
    documents = [_read_document(path) for path in args.files] if args.action in ("push", "diff") else []
    payload = read_payload(args.payload) if args.action == "validate" else None
    async with admin_client(args) as admin:
        if wants_dry_run(args):
            return await show_dry_run(args, admin, documents)
        if args.action == "push":
            query = "" if args.activate else "?activate=false"
            _registered(args, await admin.request("POST", base + query, body={args.collection: documents}))
        elif args.action == "list":
            answer = await admin.request("GET", base)
            rows = [(d["id"], d["active_version"], d["latest_version"]) for d in field(answer, args.collection)]
            show(args, answer, ("id", "active", "latest"), rows)
        elif args.action == "show":
            suffix = f"/versions/{args.version}" if args.version else ""
            _document(args, await admin.request("GET", f"{base}/{args.id}{suffix}"))
        elif args.action == "activate":
            _registered(args, await admin.request("POST", f"{base}/{args.id}/activate", body={"version": args.version}))
        elif args.action == "validate":
            body = {"direction": args.direction, "status": args.status, "version": args.version, "payload": payload}
            return _validated(args, await admin.request("POST", f"{base}/{args.id}/validate", body=body))
    return 0


def _document_commands(
    sub: argparse._SubParsersAction[argparse.ArgumentParser], admin: argparse.ArgumentParser, collection: str
) -> argparse._SubParsersAction[argparse.ArgumentParser]:
    parser = sub.add_parser(collection, help=f"manage {collection} through the admin API")
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    push = actions.add_parser("push", parents=[admin], help="register files as one atomic change")
    push.add_argument("files", type=Path, nargs="+", metavar="FILE", help="documents (JSON or YAML)")
    push.add_argument("--no-activate", dest="activate", action="store_false", help="store without activating")
    push.add_argument("--dry-run", action="store_true", help="show what would change (as diff), store nothing")
    add_diff_command(actions, admin)
    actions.add_parser("list", parents=[admin], help="every id with its active and latest version")
    show_ = actions.add_parser("show", parents=[admin], help="the version in force (or --version N)")
    show_.add_argument("id", help="the document id")
    show_.add_argument("--version", type=int, help="a stored version instead of the one in force")
    activate = actions.add_parser("activate", parents=[admin], help="activate or roll back to a version")
    activate.add_argument("id", help="the document id")
    activate.add_argument("version", type=int, help="the stored version to put in force")
    parser.set_defaults(run=_documents, collection=collection)
    return actions


async def _import_mcp(args: argparse.Namespace) -> int:
    """``contracts import-mcp URL``: one contract per tool the MCP server declares, registered as one change;
    tools whose contract in force already says the same are left alone (no new version)."""
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
        try:
            tools = await list_tools(args.url, session)
        except ImportFailed as exc:
            raise CommandError(str(exc), 1) from None
    documents = contracts_from_tools(tools, route=args.route, path=args.path, prefix=args.prefix)
    async with admin_client(args) as admin:
        changed = []
        for document in documents:
            try:
                active = await admin.request("GET", f"/contracts/{document['id']}")
            except AdminAPIError as exc:
                if exc.status != 404:
                    raise
                active = None
            if active is None or active.get("document") != document:
                changed.append(document)
        stored = await admin.request("POST", "/contracts", body={"contracts": changed}) if changed else None
    answer = {"tools": len(tools), "unchanged": len(documents) - len(changed), "registered": stored}
    if args.json:
        print_json(answer)
    else:
        print(f"{answer['tools']} tool(s), {answer['unchanged']} unchanged")
        _registered(args, stored or {"registered": []})
    return 0


def _route_row(route: Any) -> tuple[Any, ...]:
    """A route as it routes: the prefix it strips (``/NAME`` unless given; ``*`` for the default route)."""
    prefix = "*" if route.get("default") else route.get("prefix") or f"/{field(route, 'name')}"
    return route["name"], prefix, route.get("upstream"), route.get("default")


async def _routes(args: argparse.Namespace) -> int:
    columns = ("name", "prefix", "upstream", "default")
    async with admin_client(args) as admin:
        if args.action == "list":
            answer = await admin.request("GET", "/routes")
            show(args, answer, columns, [_route_row(r) for r in field(answer, "routes")])
        elif args.action == "put":
            spec = {"upstream": args.upstream, "prefix": args.prefix, "default": args.default}
            answer = await admin.put_route(args.name, spec)
            show(args, answer, columns, [_route_row(answer)])
        elif args.action == "delete":
            await admin.request("DELETE", f"/routes/{args.name}")
            show(args, {"deleted": args.name}, ("deleted",), [(args.name,)])
    return 0


def _version() -> str:
    try:
        return importlib.metadata.version("agent-gateway")
    except importlib.metadata.PackageNotFoundError:
        return "unknown (not installed)"


class _Parser(argparse.ArgumentParser):
    """argparse with its usage errors in one line (the usage block is what ``--help`` is for)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"agent-gateway: {self.prog.removeprefix('agent-gateway ')}: {message} (see --help)\n")


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="agent-gateway", description=(__doc__ or "").replace("``", ""),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )  # fmt: skip
    parser.add_argument("--version", action="version", version=f"agent-gateway {_version()}")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    sub = cast("argparse._SubParsersAction[argparse.ArgumentParser]", subparsers)  # every level is a _Parser

    serve = sub.add_parser("serve", help="run the gateway")
    serve.add_argument("--config", type=Path, help="YAML settings file (AGENT_GATEWAY_* variables override it)")
    serve.add_argument("--host", help="data-plane listen address")
    serve.add_argument("--port", type=int, help="data-plane listen port")
    serve.add_argument(
        "--insecure-admin", action="store_true", help="serve the admin API without a token, on loopback only"
    )
    serve.set_defaults(run=_serve)

    demo = sub.add_parser("demo", help="run the demo pipeline on loopback and print a handoff report")
    demo.add_argument("--contracts", type=Path, default=REPO / "contracts", help="directory of demo contracts")
    demo.add_argument("--policies", type=Path, default=REPO / "policies", help="directory of demo policies")
    demo.set_defaults(run=_demo)

    admin_url = argparse.ArgumentParser(add_help=False)
    admin_url.add_argument(
        "--admin-url",
        help="admin API URL, host:port means http:// (default $AGENT_GATEWAY_ADMIN_URL or 127.0.0.1:9901)",
    )
    admin = argparse.ArgumentParser(add_help=False, parents=[admin_url])
    add_json_option(admin)

    contract_actions = _document_commands(sub, admin, "contracts")
    validate = contract_actions.add_parser(
        "validate", parents=[admin], help="dry-run a payload file (JSON, or YAML when named *.yaml/*.yml)"
    )
    validate.add_argument("id", help="the contract id")
    validate.add_argument("payload", type=Path, help="the payload file")
    validate.add_argument("--direction", choices=("request", "response"), default="request",
                          help="check it as the request or as an answer (default request)")  # fmt: skip
    validate.add_argument("--status", type=int, default=200, help="the answer's HTTP status (default 200)")
    validate.add_argument("--version", type=int, help="a stored version instead of the one in force")
    imports = contract_actions.add_parser(
        "import-mcp", parents=[admin], help="register one contract per tool an MCP server declares (tools/list)"
    )
    imports.add_argument("url", help="the MCP server's streamable-HTTP endpoint, e.g. http://localhost:8000/mcp")
    imports.add_argument("--route", required=True, help="the gateway route in front of that server")
    imports.add_argument("--path", default="/mcp", help="the endpoint's path after the route prefix (default /mcp)")
    imports.add_argument("--prefix", default="mcp.", help="contract id prefix (default mcp.)")
    imports.set_defaults(run=_import_mcp)
    add_fuzz_command(contract_actions, admin_url)
    _document_commands(sub, admin, "policies")
    add_runs_commands(sub, admin_url)

    routes = sub.add_parser("routes", help="manage routes through the admin API")
    route_actions = routes.add_subparsers(dest="action", required=True, metavar="ACTION")
    route_actions.add_parser("list", parents=[admin], help="every route")
    put = route_actions.add_parser("put", parents=[admin], help="add or replace a route")
    put.add_argument("name", help="the route name (contracts and policies attach to it)")
    put.add_argument("--upstream", required=True, help="the agent's base URL")
    put.add_argument("--prefix", help="the path prefix it serves (default /NAME)")
    put.add_argument("--default", action="store_true", help="take every path no other route claims")
    delete = route_actions.add_parser("delete", parents=[admin], help="remove a route")
    delete.add_argument("name", help="the route name")
    routes.set_defaults(run=_routes)
    add_operation_commands(sub, admin)
    add_completion_command(sub, parser)
    return parser


def _fail(message: object, code: int) -> int:
    print(f"agent-gateway: {' '.join(str(message).split())}", file=sys.stderr)
    return code


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    _event_loop_policy()
    run: Callable[[argparse.Namespace], Coroutine[Any, Any, int]] = args.run
    try:
        return asyncio.run(run(args))
    except AdminAPIError as exc:
        print_json(exc.problem)  # the whole problem on stdout, for scripts; the gist on stderr
        return _fail(f"the admin API refused: {exc}", 2)
    except AdminUnavailable as exc:
        return _fail(exc, 1)
    except CommandError as exc:
        return _fail(exc, exc.code)
    except (ConfigError, AdminURLError, ContractDocumentError, OSError) as exc:
        return _fail(exc, 2)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
