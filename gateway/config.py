"""Gateway settings: one frozen pydantic model, read from YAML and overridden by ``GATEWAY_*`` variables.

Precedence (highest first): command-line flags, environment, the YAML file, the defaults below. Environment
names are the setting path upper-cased and joined with ``__`` (``GATEWAY_LISTEN__PORT=8080``,
``GATEWAY_LIMITS__MAX_BODY_BYTES=1048576``); ``GATEWAY_ADMIN_TOKEN`` is kept as the short, documented name of
``GATEWAY_ADMIN__TOKEN`` because that is the one every deployment sets.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

ENV_PREFIX = "GATEWAY_"
_ENV_ALIASES = {"GATEWAY_ADMIN_TOKEN": "GATEWAY_ADMIN__TOKEN"}


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Listener(_Frozen):
    host: str = "0.0.0.0"
    port: int = Field(8080, ge=0, le=65535)


class AdminListener(_Frozen):
    """The admin API listens apart from the data plane so it can be firewalled separately."""

    host: str = "127.0.0.1"
    port: int = Field(9901, ge=0, le=65535)
    token: SecretStr | None = None
    insecure: bool = False
    """Serve without a token (local development only); forces the listener onto loopback."""


class Limits(_Frozen):
    max_body_bytes: int = Field(10 * 1024 * 1024, gt=0)
    max_concurrency_per_route: int = Field(1024, gt=0)
    max_header_line_bytes: int = Field(8190, gt=0)
    max_header_field_bytes: int = Field(8190, gt=0)
    max_headers: int = Field(100, gt=0)
    max_header_bytes: int = Field(64 * 1024, gt=0)
    """Total size of a request's header block (names, values and separators); larger answers 431."""
    max_violations: int = Field(50, gt=0)
    """How many violations a problem document lists; validation stops once more than this many are found and
    the problem says "more than N" (collecting every error of a huge invalid document would stall the loop)."""
    offload_bytes: int = Field(64 * 1024, ge=0)
    """Bodies at least this large are parsed, validated and redacted in a worker thread so one big document
    never blocks other traffic; 0 offloads every body."""


class Timeouts(_Frozen):
    connect: float = Field(5.0, gt=0)
    read: float = Field(60.0, gt=0)
    """Seconds without a byte from the upstream before the attempt fails with 504."""
    header: float = Field(10.0, gt=0)
    """Seconds a client may take to send a complete request head (request line and headers), from the
    connection's start or the end of the previous response; slower clients are disconnected (slowloris)."""
    keepalive: float = Field(75.0, gt=0)
    """Seconds an idle keep-alive connection is kept open waiting for the next request."""


class RouteSpec(_Frozen):
    """Where a path prefix is forwarded. ``default`` routes take every path no other route claims."""

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
    upstream: str
    prefix: str | None = None
    default: bool = False
    max_concurrency: int | None = Field(None, gt=0)

    @field_validator("upstream")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("upstream must be an http:// or https:// URL")
        return value.rstrip("/")

    @field_validator("prefix")
    @classmethod
    def _normalise_prefix(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if not value.startswith("/"):
            raise ValueError("prefix must start with '/'")
        return value.rstrip("/") or "/"

    @property
    def effective_prefix(self) -> str:
        """The path prefix stripped before forwarding; default routes strip nothing."""
        if self.default:
            return ""
        return self.prefix if self.prefix is not None else f"/{self.name}"


class AuditSettings(_Frozen):
    """The handoff audit trail (see ``gateway/audit.py``)."""

    enabled: bool = True
    payloads: bool = False
    """Keep request/response bodies in the records (after redaction); digests and sizes are always kept."""
    redact: tuple[str, ...] = ()
    """JSON pointers whose values are replaced by "[redacted]" wherever a payload or a violation message is
    kept or shown: audit records, DLQ items, webhook payloads and logs (secrets, PII)."""
    redact_headers: tuple[str, ...] = (
        "authorization",
        "proxy-authorization",
        "cookie",
        "set-cookie",
        "x-api-key",
        "api-key",
        "x-auth-token",
    )
    """Header names (case-insensitive) whose values are replaced by "[redacted]" wherever headers are kept or
    shown (DLQ items, webhook payloads, audit, logs). Setting this list replaces the default."""
    max_records: int = Field(100_000, gt=0)
    max_age_seconds: float = Field(7 * 24 * 3600, gt=0)
    flush_interval: float = Field(0.25, gt=0)
    prune_interval: float = Field(60.0, ge=0)
    """Seconds between retention passes (deleting beyond ``max_records`` and older than ``max_age_seconds``)."""
    queue_size: int = Field(10_000, gt=0)

    @field_validator("redact")
    @classmethod
    def _pointers(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for pointer in value:
            if pointer and not pointer.startswith("/"):
                raise ValueError(f"redact entries are JSON pointers starting with '/': {pointer!r}")
        return value


class StoreConfig(_Frozen):
    backend: Literal["sqlite", "redis"] = "sqlite"
    path: str = "agent-gateway.db"
    """SQLite file (``backend: sqlite``); ``:memory:`` keeps nothing across restarts."""
    url: str = "redis://127.0.0.1:6379/0"
    """Redis URL (``backend: redis``): one Redis shared by many sidecars."""
    prefix: str = "agw:"
    """Key prefix in Redis, so several gateway fleets can share one server."""


class GatewayConfig(_Frozen):
    listen: Listener = Listener()
    admin: AdminListener = AdminListener()
    limits: Limits = Limits()
    timeouts: Timeouts = Timeouts()
    store: StoreConfig = StoreConfig()
    audit: AuditSettings = AuditSettings()
    routes: tuple[RouteSpec, ...] = ()
    contract_dirs: tuple[Path, ...] = ()
    policy_dirs: tuple[Path, ...] = ()
    log_level: str = "INFO"
    log_format: Literal["json", "text"] = "json"

    @model_validator(mode="after")
    def _unique_routes(self) -> GatewayConfig:
        names = [r.name for r in self.routes]
        if len(names) != len(set(names)):
            raise ValueError("route names must be unique")
        if sum(r.default for r in self.routes) > 1:
            raise ValueError("at most one route can be the default")
        return self


def env_overrides(environ: Mapping[str, str]) -> dict[str, Any]:
    """Turn ``GATEWAY_A__B=v`` variables into the nested mapping ``{"a": {"b": "v"}}``."""
    tree: dict[str, Any] = {}
    for raw_name, value in environ.items():
        name = _ENV_ALIASES.get(raw_name, raw_name)
        if not name.startswith(ENV_PREFIX) or name == "GATEWAY_ADMIN_URL":
            continue
        path = name[len(ENV_PREFIX) :].lower().split("__")
        node = tree
        for part in path[:-1]:
            node = node.setdefault(part, {})
        node[path[-1]] = value
    return tree


def deep_merge(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def load_config(
    path: Path | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> GatewayConfig:
    """Build the settings from a YAML file, the environment and explicit overrides, in rising precedence."""
    data: dict[str, Any] = {}
    if path is not None:
        loaded = yaml.safe_load(path.read_text()) or {}
        if not isinstance(loaded, dict):
            raise ValueError(f"{path}: the top level must be a mapping")
        data = loaded
    data = deep_merge(data, env_overrides(os.environ if environ is None else environ))
    if overrides:
        data = deep_merge(data, overrides)
    return GatewayConfig.model_validate(data)
