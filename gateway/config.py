"""Gateway settings: one frozen pydantic model, read from YAML and overridden by ``AGENT_GATEWAY_*`` variables.

Precedence (highest first): command-line flags, environment, the YAML file, the defaults below. A setting's
variable is ``AGENT_GATEWAY_`` and its path upper-cased and joined with ``__`` (``AGENT_GATEWAY_LISTEN__PORT=8080``);
only single settings, not whole sections. ``AGENT_GATEWAY_ADMIN_TOKEN`` is short for ``AGENT_GATEWAY_ADMIN__TOKEN``;
``AGENT_GATEWAY_ADMIN_URL`` is the CLI's, not a setting. Variables without the prefix are never looked at.

Service links. Kubernetes injects variables for every Service of the namespace into every pod: a Service named
``agent-gateway`` (or ``agent-gateway-admin``, ...) gives ``AGENT_GATEWAY[_ADMIN]_SERVICE_HOST`` = cluster IP,
``…_SERVICE_PORT`` and ``…_SERVICE_PORT_<PORT NAME>`` = port, ``…_PORT`` and ``…_PORT_<port>_<PROTO>`` =
``<proto>://<cluster IP>:<port>``, and ``…_PORT_<port>_<PROTO>_PROTO|_PORT|_ADDR`` = proto, port, cluster IP. A
variable under our prefix that names no setting is skipped when its name ends with one of these suffixes *and*
its value has that suffix's shape (IP address, port number, protocol, ``tcp|udp|sctp://ip:port``, agreeing with
the port and protocol in the name). Any other name under the prefix that is not a setting stops start-up with a
one-line error, so a typo never silently does nothing (``AGENT_GATEWAY_PORT=8081`` is refused: Kubernetes puts an
address there, never a bare port). A name that is a setting is always read as the setting.

Retired names. The ``GATEWAY_*`` names of earlier releases are not read (Kubernetes injects ``GATEWAY_*`` for a
Service named ``gateway``); :func:`retired_variables` lists those that spell a setting so the CLI can warn.

Errors. :func:`load_config` raises :class:`ConfigError`: one line naming where the value came from (file,
variable, command line), the setting (``listen.port``, ``routes[0].upstream``) and the problem.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import re
import reprlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_core import ErrorDetails
from yarl import URL

ENV_PREFIX = "AGENT_GATEWAY_"
RETIRED_PREFIX = "GATEWAY_"
ADMIN_URL_VARIABLE = ENV_PREFIX + "ADMIN_URL"
ADMIN_TOKEN_VARIABLE = ENV_PREFIX + "ADMIN_TOKEN"
_ENV_ALIASES: dict[str, tuple[str, ...]] = {"ADMIN_TOKEN": ("admin", "token")}
_NOT_SETTINGS = frozenset({"ADMIN_URL"})
"""Names under the prefix that other parts read (the CLI's admin URL)."""


class ConfigError(ValueError):
    """Settings that cannot be used; the message is one line: source, setting path, problem."""


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
    trace_url: str | None = Field(None, pattern=r"^https?://\S*\{trace_id\}\S*$")
    """The console links trace ids here, ``{trace_id}`` replaced (``http://jaeger:16686/trace/{trace_id}``)."""


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
    stream_idle: float = Field(300.0, gt=0)
    """Seconds without a byte on an event stream (a request that accepts ``text/event-stream``: MCP's GET
    stream, streamed completions) before it is cut; ``read`` applies to every other answer. Event streams have
    no whole-body limit either: each event is bounded by ``limits.max_body_bytes``."""
    client_idle: float = Field(30.0, gt=0)
    """Seconds without a byte from the client while its request body is read or relayed; a stalled upload
    (slow body) is answered 408 instead of holding a connection and a route's concurrency slot forever."""


class RouteSpec(_Frozen):
    """Where a path prefix is forwarded. ``default`` routes take every path no other route claims."""

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
    upstream: str
    prefix: str | None = None
    default: bool = False
    max_concurrency: int | None = Field(None, gt=0)
    escaped_slashes: Literal["reject", "keep"] = "reject"
    """An encoded ``/`` or ``\\`` inside a path segment (``%2F``, ``%5C``): ``reject`` answers 400; ``keep``
    forwards it encoded and matches contracts with it as part of the segment, for agents that treat it as data
    (see ``gateway/target.py``)."""

    @field_validator("upstream")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("upstream must be an http:// or https:// URL")
        _check_url(value, "upstream")
        return value.rstrip("/")

    @field_validator("prefix")
    @classmethod
    def _normalise_prefix(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if not value.startswith("/"):
            raise ValueError("prefix must start with '/'")
        from gateway.dataplane.target import canonical_target  # the data plane's path rules; imported late (no cycle)

        prefix = value.rstrip("/") or "/"
        if "?" in prefix or canonical_target(prefix).path != prefix:
            raise ValueError("prefix must be a canonical path (no dot-segments, '//', '?' or needless escapes)")
        return prefix

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
    max_records: int = Field(1_000_000, gt=0)
    """Records kept at most: a day of a fleet sidecar at a million handoffs a day, about 0.9 GB of SQLite file
    (~0.9 KB a record with its indexes and summaries, measured by loadtests/scale_store.py); at up to ~140k
    handoffs a day ``max_age_seconds`` is what bounds the trail."""
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

    @field_validator("url")
    @classmethod
    def _redis_url(cls, value: str) -> str:
        if not value.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("url must be a redis://, rediss:// or unix:// URL")
        _check_url(value, "url")
        return value


class HealthSettings(_Frozen):
    """The health listener (``gateway/control/health.py``): probes and Prometheus metrics that need no admin token,
    so the kubelet, a container HEALTHCHECK and a scraper work whatever the admin settings. It serves nothing
    sensitive, hence ``0.0.0.0``; a NetworkPolicy decides who may scrape it."""

    host: str = "0.0.0.0"
    port: int | None = Field(None, ge=0, le=65535)
    """None: no health listener. The image sets 9902 (``AGENT_GATEWAY_HEALTH__PORT``); it is not the default
    here because every embedded gateway (tests, the demo's four) would contend for one fixed port."""
    agent_url: str | None = None
    """The agent's own health URL (``http://127.0.0.1:8000/healthz``): ``/readyz`` fails while it does not
    answer 2xx, so a Service stops sending traffic to a pod whose agent cannot take it."""
    check_timeout: float = Field(1.0, gt=0)
    """Seconds each readiness check (store, agent) may take before it counts as failed; probes must not hang."""

    @field_validator("agent_url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is not None:
            if not value.startswith(("http://", "https://")):
                raise ValueError("agent_url must be an http:// or https:// URL")
            _check_url(value, "agent_url")
        return value


class EgressListener(_Frozen):
    """The egress listener (``gateway/dataplane/egress.py``): where this pod's agent sends its *outgoing* calls
    (peers' URLs pointed at ``http://localhost:<port>/<route>``), checked by the same chain as the data port.
    Every call on it is recorded as coming from ``agent``, never from a header the caller sets, so whoever can
    reach the port speaks as that agent: keep it on loopback (the pod's own network namespace)."""

    host: str = "127.0.0.1"
    port: int | None = Field(None, ge=0, le=65535)
    """None: no egress listener (the default, like ``health.port``: embedded gateways would contend for it)."""
    agent: str | None = Field(None, pattern=r"^[!-~](?:[ -~]{0,126}[!-~])?$")
    """This pod's agent name (printable ASCII, a header value); in Kubernetes from the Downward API:
    ``AGENT_GATEWAY_EGRESS__AGENT`` set from ``metadata.labels['app']``."""

    @model_validator(mode="after")
    def _named(self) -> EgressListener:
        if self.port is not None and self.agent is None:
            raise ValueError("agent is required when port is set: every call on the egress port is recorded as it")
        return self


class GatewayConfig(_Frozen):
    listen: Listener = Listener()
    admin: AdminListener = AdminListener()
    limits: Limits = Limits()
    timeouts: Timeouts = Timeouts()
    store: StoreConfig = StoreConfig()
    audit: AuditSettings = AuditSettings()
    health: HealthSettings = HealthSettings()
    egress: EgressListener = EgressListener()
    routes: tuple[RouteSpec, ...] = ()
    contract_dirs: tuple[Path, ...] = ()
    policy_dirs: tuple[Path, ...] = ()
    watch_interval: float = Field(2.0, ge=0, le=86400, description="seconds between scans of the dirs; 0 = off")
    workers: int = Field(1, ge=1, le=64, description="data-plane processes sharing the port (SO_REUSEPORT, Linux)")
    worker_poll_interval: float = Field(
        1.0, gt=0, le=3600, description="with workers > 1: seconds between a worker's reads of changed tables"
    )
    log_level: str = "INFO"
    log_format: Literal["json", "text"] = "json"

    @field_validator("routes")
    @classmethod
    def _unique_routes(cls, routes: tuple[RouteSpec, ...]) -> tuple[RouteSpec, ...]:
        names = [r.name for r in routes]
        if len(names) != len(set(names)):
            raise ValueError("route names must be unique")
        if sum(r.default for r in routes) > 1:
            raise ValueError("at most one route can be the default")
        return routes

    @field_validator("contract_dirs", "policy_dirs", mode="before")
    @classmethod
    def _path_list(cls, value: Any) -> Any:
        return split_dirs(value)

    @field_validator("log_level")
    @classmethod
    def _known_level(cls, value: str) -> str:
        if value.upper() not in logging.getLevelNamesMapping():
            raise ValueError("must be one of DEBUG, INFO, WARNING, ERROR, CRITICAL")
        return value


DIRECTORY_LISTS = ("contract_dirs", "policy_dirs")


def split_dirs(value: Any) -> Any:
    """A directory list given as one string (a variable) is split like ``PATH``: ``a:b`` is ``[a, b]``."""
    return [part for part in value.split(os.pathsep) if part] if isinstance(value, str) else value


def _dirs_relative_to(data: dict[str, Any], base: Path) -> dict[str, Any]:
    """``contract_dirs``/``policy_dirs`` of a settings file, relative ones resolved against the file's directory:
    a file and the documents next to it move together (a checkout, a ConfigMap). Variables and flags are
    relative to the working directory, as any path typed in a shell is."""
    for key in DIRECTORY_LISTS:
        value = split_dirs(data.get(key))
        if isinstance(value, list):
            data = {**data, key: [base / item if isinstance(item, str) else item for item in value]}
    return data


def _check_url(value: str, what: str) -> None:
    """Refuse what would only fail at the first request: no host, a port that is not a number, spaces."""
    try:
        url = URL(value)
        url.port  # noqa: B018 - parsing the port is the check
    except ValueError as exc:
        raise ValueError(f"{what} is not a valid URL: {exc}") from exc
    if not url.host and url.scheme != "unix":
        raise ValueError(f"{what} has no host")
    if any(c.isspace() for c in value):
        raise ValueError(f"{what} contains white space")


# -- the environment ---------------------------------------------------------------------------------------

_IP_NAME = re.compile(r"_(?:SERVICE_HOST|PORT_[0-9]+_(?:TCP|UDP|SCTP)_ADDR)$")
_PORT_NAME = re.compile(r"_(?:SERVICE_PORT(?:_[A-Z0-9_]+)?|PORT_(?P<number>[0-9]+)_(?:TCP|UDP|SCTP)_PORT)$")
_PROTO_NAME = re.compile(r"_PORT_[0-9]+_(?P<proto>TCP|UDP|SCTP)_PROTO$")
_ADDRESS_NAME = re.compile(r"_PORT(?:_(?P<number>[0-9]+)_(?P<proto>TCP|UDP|SCTP))?$")
_ADDRESS = re.compile(
    r"(?P<proto>tcp|udp|sctp)://(?:\[(?P<ip6>[0-9A-Fa-f:.]+)\]|(?P<ip4>[0-9.]+)):(?P<port>[0-9]{1,5})"
)


def _is_ip(value: str) -> bool:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return False
    return True


def is_service_link(name: str, value: str) -> bool:
    """Whether ``name=value`` is a variable Kubernetes injects for a Service (see the module docstring)."""
    if _is_ip(value):
        return _IP_NAME.search(name) is not None
    if re.fullmatch(r"[0-9]{1,5}", value):
        port = _PORT_NAME.search(name)
        return port is not None and port["number"] in (None, value)
    if value in ("tcp", "udp", "sctp"):
        proto = _PROTO_NAME.search(name)
        return proto is not None and proto["proto"] == value.upper()
    address = _ADDRESS.fullmatch(value)
    if address is None or not _is_ip(address["ip6"] or address["ip4"]):
        return False
    link = _ADDRESS_NAME.search(name)
    if link is None:
        return False
    return link["number"] in (None, address["port"]) and link["proto"] in (None, address["proto"].upper())


def _setting_path(key: str) -> tuple[str, ...] | None:
    """The path of the single setting ``key`` (a name without prefix) spells, or None (unknown, or a section)."""
    path = _ENV_ALIASES.get(key) or tuple(key.lower().split("__"))
    model: type[BaseModel] = GatewayConfig
    for depth, part in enumerate(path):
        field = model.model_fields.get(part)
        if field is None:
            return None
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            model = annotation
        else:
            return path if depth == len(path) - 1 else None
    return None


def env_overrides(environ: Mapping[str, str]) -> tuple[dict[str, Any], dict[tuple[str, ...], str]]:
    """The settings ``AGENT_GATEWAY_A__B=v`` variables give, as ``{"a": {"b": "v"}}``, and which variable gave
    each setting path (for error messages). Service links are skipped; any other unknown name is an error."""
    tree: dict[str, Any] = {}
    sources: dict[tuple[str, ...], str] = {}
    for name, value in sorted(environ.items()):
        key = name[len(ENV_PREFIX) :]
        if not name.startswith(ENV_PREFIX) or key in _NOT_SETTINGS:
            continue
        path = _setting_path(key)
        if path is None:
            if is_service_link(name, value):
                continue
            raise ConfigError(
                f"{name}: unknown setting {key.lower().replace('__', '.')!r} (settings are spelled like "
                f"{ENV_PREFIX}LISTEN__PORT; Kubernetes service links have their own shape)"
            )
        if path in sources:
            raise ConfigError(f"{name}: {'.'.join(path)} is also set by {sources[path]}")
        node = tree
        for part in path[:-1]:
            node = node.setdefault(part, {})
        node[path[-1]] = value
        sources[path] = name
    return tree, sources


def retired_variables(environ: Mapping[str, str]) -> list[str]:
    """A warning for each old ``GATEWAY_*`` variable that spells a setting: it is not read any more."""
    return [
        f"{name} is ignored (the GATEWAY_ prefix collides with Kubernetes service links): "
        f"rename it {ENV_PREFIX}{name[len(RETIRED_PREFIX) :]}"
        for name in sorted(environ)
        if name.startswith(RETIRED_PREFIX)
        and (name[len(RETIRED_PREFIX) :] in _NOT_SETTINGS or _setting_path(name[len(RETIRED_PREFIX) :]) is not None)
    ]


# -- loading -----------------------------------------------------------------------------------------------


def deep_merge(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _read_file(path: Path) -> dict[str, Any]:
    try:
        loaded = yaml.safe_load(path.read_bytes())
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such file") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read it: {exc.strerror or exc}") from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
        raise ConfigError(f"{path}: not valid YAML: {where}{_one_line(exc.problem or str(exc))}") from None
    except (yaml.YAMLError, RecursionError) as exc:
        raise ConfigError(f"{path}: not valid YAML: {_one_line(str(exc)) or 'nested too deeply'}") from None
    if loaded is None:
        return {}
    if not isinstance(loaded, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of settings, not a {type(loaded).__name__}")
    return loaded


def _leaf_paths(tree: Mapping[str, Any], prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    paths: list[tuple[str, ...]] = []
    for key, value in tree.items():
        paths += _leaf_paths(value, (*prefix, key)) if isinstance(value, Mapping) else [(*prefix, key)]
    return paths


def _dotted(loc: tuple[int | str, ...]) -> str:
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "(top level)"


def _problem(error: ErrorDetails) -> str:
    if error["type"] == "extra_forbidden":
        return "unknown setting"
    message = error["msg"].removeprefix("Value error, ")
    value = error["input"]
    if isinstance(value, str | int | float) and "token" not in error["loc"]:
        message += f" (got {reprlib.repr(value)})"
    return message


def _config_error(exc: ValidationError, origin: str, sources: Mapping[tuple[str, ...], str]) -> ConfigError:
    """The first problem in one line, attributed to the variable or flag that gave the value, else the file."""
    errors = exc.errors(include_url=False)
    first = errors[0]
    loc = tuple(first["loc"])
    names = tuple(str(part) for part in loc)
    given = next((sources[names[:n]] for n in range(len(names), 0, -1) if names[:n] in sources), origin)
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    return ConfigError(_one_line(f"{given}: {_dotted(loc)}: {_problem(first)}{more}"))


def load_config(
    path: Path | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> GatewayConfig:
    """Build the settings from a YAML file, the environment and explicit overrides, in rising precedence.

    Raises :class:`ConfigError` (one line) for anything wrong, whichever of the three it came from."""
    data = _dirs_relative_to(_read_file(path), path.parent.absolute()) if path is not None else {}
    from_env, sources = env_overrides(os.environ if environ is None else environ)
    data = deep_merge(data, from_env)
    if overrides:
        data = deep_merge(data, overrides)
        sources = {**sources, **dict.fromkeys(_leaf_paths(overrides), "command line")}
    try:
        return GatewayConfig.model_validate(data)
    except ValidationError as exc:
        raise _config_error(exc, str(path) if path is not None else "settings", sources) from None
