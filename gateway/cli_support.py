"""What every admin-side command shares: one-line failures, the admin client, JSON on stdout, payload files."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

import orjson
import yaml

from gateway.admin.client import AdminClient, AdminUnavailable
from gateway.config import retired_variables

ADMIN_VARIABLES = ("GATEWAY_ADMIN_URL", "GATEWAY_ADMIN_TOKEN")
"""Retired names the admin commands warn about (``serve`` warns about every retired setting)."""


class CommandError(Exception):
    """A failure reported in one line; ``code`` is the exit status (1 runtime failure, 2 usage error)."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code


def print_json(value: Any) -> None:
    sys.stdout.write(orjson.dumps(value, option=orjson.OPT_INDENT_2).decode() + "\n")


def read_bytes(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise CommandError(f"{path}: cannot read it: {exc.strerror or exc}", 2) from None


def json_ready(value: Any, path: Path) -> Any:
    """``value`` if it can be sent as JSON (YAML can also spell sets, binary and odd keys, which cannot)."""
    try:
        orjson.dumps(value)
    except TypeError as exc:
        raise CommandError(f"{path}: cannot be sent as JSON: {exc}", 2) from None
    return value


def read_payload(path: Path) -> Any:
    """A payload file: YAML when named ``*.yaml``/``*.yml``, JSON otherwise."""
    raw = read_bytes(path)
    try:
        if path.suffix in (".yaml", ".yml"):
            return json_ready(yaml.safe_load(raw), path)
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise CommandError(f"{path}: not valid JSON: {exc}", 2) from None
    except (yaml.YAMLError, RecursionError) as exc:
        raise CommandError(f"{path}: not valid YAML: {exc}", 2) from None


def admin_client(args: argparse.Namespace) -> AdminClient:
    """The admin client for ``--admin-url`` / ``AGENT_GATEWAY_ADMIN_URL``, after warning about retired names."""
    for warning in retired_variables({k: v for k, v in os.environ.items() if k in ADMIN_VARIABLES}):
        print(f"agent-gateway: warning: {warning}", file=sys.stderr)
    return AdminClient(args.admin_url)


def field(answer: Any, key: str) -> Any:
    """``answer[key]``, or a one-line failure when what answered is not the admin API."""
    if not isinstance(answer, dict) or key not in answer:
        raise AdminUnavailable(f"the answer has no {key!r}: is the admin URL the agent-gateway admin listener?")
    return answer[key]
