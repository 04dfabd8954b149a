"""The ``agent-gateway`` command: ``serve``, ``demo``, and ``contracts``/``policies``/``routes``/``runs`` against
the admin API.

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
from typing import Any

import aiohttp

from gateway.admin.client import AdminAPIError, AdminUnavailable, AdminURLError
from gateway.app import start_gateway
from gateway.cli_fuzz import add_fuzz_command
from gateway.cli_operations import add_operation_commands
from gateway.cli_replay import add_replay_command
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
from gateway.report import render_timeline

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
    try:
        gateway = await start_gateway(config, insecure_admin=args.insecure_admin)
    except _startup_errors() as exc:
        raise CommandError(f"cannot start: {exc}", 1) from None
    gc.freeze()  # everything loaded at start-up lives forever: keep it out of every future collection
    logging.getLogger("agent_gateway").info(
        "serving data plane on %s:%d, admin API %s", config.listen.host, gateway.data_port,
        f"on {gateway.admin_url}" if gateway.admin_url else "disabled",
    )  # fmt: skip
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await gateway.close()
    return 0


async def _demo(args: argparse.Namespace) -> int:
    from gateway.demo.pipeline import run_demo

    logging.basicConfig(level=logging.ERROR)
    return await run_demo(args.contracts, args.policies)


def _read_document(path: Path) -> dict[str, Any]:
    return dict(json_ready(load_document_text(read_bytes(path), source=str(path)), path))


async def _documents(args: argparse.Namespace) -> int:
    """``contracts`` and ``policies``: the same verbs on either collection (plus ``validate`` for contracts)."""
    base = f"/{args.collection}"
    documents = [_read_document(path) for path in args.files] if args.action == "push" else []
    payload = read_payload(args.payload) if args.action == "validate" else None
    async with admin_client(args) as admin:
        if args.action == "push":
            query = "" if args.activate else "?activate=false"
            print_json(await admin.request("POST", base + query, body={args.collection: documents}))
        elif args.action == "list":
            print_json(await admin.request("GET", base))
        elif args.action == "show":
            suffix = f"/versions/{args.version}" if args.version else ""
            print_json(await admin.request("GET", f"{base}/{args.id}{suffix}"))
        elif args.action == "activate":
            print_json(await admin.request("POST", f"{base}/{args.id}/activate", body={"version": args.version}))
        elif args.action == "validate":
            body = {
                "direction": args.direction,
                "status": args.status,
                "version": args.version,
                "payload": payload,
            }
            result = await admin.request("POST", f"{base}/{args.id}/validate", body=body)
            print_json(result)
            return 0 if field(result, "valid") is True else 1
    return 0


def _document_commands(
    sub: argparse._SubParsersAction[argparse.ArgumentParser], admin_url: argparse.ArgumentParser, collection: str
) -> argparse._SubParsersAction[argparse.ArgumentParser]:
    parser = sub.add_parser(collection, help=f"manage {collection} through the admin API")
    actions = parser.add_subparsers(dest="action", required=True)
    push = actions.add_parser("push", parents=[admin_url], help="register files as one atomic change")
    push.add_argument("files", type=Path, nargs="+")
    push.add_argument("--no-activate", dest="activate", action="store_false", help="store without activating")
    actions.add_parser("list", parents=[admin_url])
    show = actions.add_parser("show", parents=[admin_url])
    show.add_argument("id")
    show.add_argument("--version", type=int)
    activate = actions.add_parser("activate", parents=[admin_url], help="activate or roll back to a version")
    activate.add_argument("id")
    activate.add_argument("version", type=int)
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
    print_json({"tools": len(tools), "unchanged": len(documents) - len(changed), "registered": stored})
    return 0


async def _runs(args: argparse.Namespace) -> int:
    async with admin_client(args) as admin:
        if args.action == "list":
            result = await admin.request("GET", f"/runs?limit={args.limit}")
            if args.json:
                print_json(result)
            else:
                for run in field(result, "runs"):
                    print(f"{run['run_id']:<24} {run['handoffs']:>4} handoffs {run['failures']:>3} failures")
        else:
            run = await admin.request("GET", f"/runs/{args.id}")
            if args.json:
                print_json(run)
            else:
                field(run, "handoffs")  # refuse a foreign answer before rendering it as a timeline
                print(render_timeline(run))
    return 0


async def _routes(args: argparse.Namespace) -> int:
    async with admin_client(args) as admin:
        if args.action == "list":
            print_json(await admin.request("GET", "/routes"))
        elif args.action == "put":
            spec = {"upstream": args.upstream, "prefix": args.prefix, "default": args.default}
            print_json(await admin.put_route(args.name, spec))
        elif args.action == "delete":
            await admin.request("DELETE", f"/routes/{args.name}")
    return 0


def _version() -> str:
    try:
        return importlib.metadata.version("agent-gateway")
    except importlib.metadata.PackageNotFoundError:
        return "unknown (not installed)"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="agent-gateway", description=(__doc__ or "").replace("``", ""),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )  # fmt: skip
    parser.add_argument("--version", action="version", version=f"agent-gateway {_version()}")
    sub = parser.add_subparsers(dest="command", required=True)

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

    contract_actions = _document_commands(sub, admin_url, "contracts")
    validate = contract_actions.add_parser(
        "validate", parents=[admin_url], help="dry-run a payload file (JSON, or YAML when named *.yaml/*.yml)"
    )
    validate.add_argument("id")
    validate.add_argument("payload", type=Path)
    validate.add_argument("--direction", choices=("request", "response"), default="request")
    validate.add_argument("--status", type=int, default=200)
    validate.add_argument("--version", type=int)
    imports = contract_actions.add_parser(
        "import-mcp", parents=[admin_url], help="register one contract per tool an MCP server declares (tools/list)"
    )
    imports.add_argument("url", help="the MCP server's streamable-HTTP endpoint, e.g. http://localhost:8000/mcp")
    imports.add_argument("--route", required=True, help="the gateway route in front of that server")
    imports.add_argument("--path", default="/mcp", help="the endpoint's path after the route prefix (default /mcp)")
    imports.add_argument("--prefix", default="mcp.", help="contract id prefix (default mcp.)")
    imports.set_defaults(run=_import_mcp)
    add_fuzz_command(contract_actions, admin_url)
    _document_commands(sub, admin_url, "policies")

    runs = sub.add_parser("runs", help="inspect recorded pipeline runs through the admin API")
    run_actions = runs.add_subparsers(dest="action", required=True)
    runs_list = run_actions.add_parser("list", parents=[admin_url])
    runs_list.add_argument("--limit", type=int, default=20)
    runs_list.add_argument("--json", action="store_true")
    runs_show = run_actions.add_parser("show", parents=[admin_url], help="a run's timeline and entry point")
    runs_show.add_argument("id")
    runs_show.add_argument("--json", action="store_true")
    add_replay_command(run_actions, admin_url)
    runs.set_defaults(run=_runs)

    routes = sub.add_parser("routes", help="manage routes through the admin API")
    route_actions = routes.add_subparsers(dest="action", required=True)
    route_actions.add_parser("list", parents=[admin_url])
    put = route_actions.add_parser("put", parents=[admin_url])
    put.add_argument("name")
    put.add_argument("--upstream", required=True)
    put.add_argument("--prefix")
    put.add_argument("--default", action="store_true", help="take every path no other route claims")
    delete = route_actions.add_parser("delete", parents=[admin_url])
    delete.add_argument("name")
    routes.set_defaults(run=_routes)
    add_operation_commands(sub, admin_url)
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
