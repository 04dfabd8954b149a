"""Settings: YAML, ``AGENT_GATEWAY_*`` overrides, Kubernetes service links, one-line errors for bad values."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from gateway.config import ConfigError, GatewayConfig, RouteSpec, is_service_link, load_config, retired_variables

# Exactly what the kubelet injects into every pod of a namespace holding these Services (pkg/kubelet/envvars):
# `kubernetes` (443, port named https), `gateway` (unnamed TCP 80), `agent-gateway` (TCP 8080 named data and
# 9901 named admin), `agent-gateway-admin` (IPv6 cluster IP, 9901 named admin), `agent-gateway-dns` (UDP 53).
KUBERNETES_ENV = {
    "KUBERNETES_SERVICE_HOST": "10.96.0.1",
    "KUBERNETES_SERVICE_PORT": "443",
    "KUBERNETES_SERVICE_PORT_HTTPS": "443",
    "KUBERNETES_PORT": "tcp://10.96.0.1:443",
    "KUBERNETES_PORT_443_TCP": "tcp://10.96.0.1:443",
    "KUBERNETES_PORT_443_TCP_PROTO": "tcp",
    "KUBERNETES_PORT_443_TCP_PORT": "443",
    "KUBERNETES_PORT_443_TCP_ADDR": "10.96.0.1",
    "GATEWAY_SERVICE_HOST": "10.0.0.1",
    "GATEWAY_SERVICE_PORT": "80",
    "GATEWAY_PORT": "tcp://10.0.0.1:80",
    "GATEWAY_PORT_80_TCP": "tcp://10.0.0.1:80",
    "GATEWAY_PORT_80_TCP_PROTO": "tcp",
    "GATEWAY_PORT_80_TCP_PORT": "80",
    "GATEWAY_PORT_80_TCP_ADDR": "10.0.0.1",
    "AGENT_GATEWAY_SERVICE_HOST": "10.0.0.2",
    "AGENT_GATEWAY_SERVICE_PORT": "8080",
    "AGENT_GATEWAY_SERVICE_PORT_DATA": "8080",
    "AGENT_GATEWAY_SERVICE_PORT_ADMIN": "9901",
    "AGENT_GATEWAY_PORT": "tcp://10.0.0.2:8080",
    "AGENT_GATEWAY_PORT_8080_TCP": "tcp://10.0.0.2:8080",
    "AGENT_GATEWAY_PORT_8080_TCP_PROTO": "tcp",
    "AGENT_GATEWAY_PORT_8080_TCP_PORT": "8080",
    "AGENT_GATEWAY_PORT_8080_TCP_ADDR": "10.0.0.2",
    "AGENT_GATEWAY_PORT_9901_TCP": "tcp://10.0.0.2:9901",
    "AGENT_GATEWAY_PORT_9901_TCP_PROTO": "tcp",
    "AGENT_GATEWAY_PORT_9901_TCP_PORT": "9901",
    "AGENT_GATEWAY_PORT_9901_TCP_ADDR": "10.0.0.2",
    "AGENT_GATEWAY_ADMIN_SERVICE_HOST": "fd00:10::5",
    "AGENT_GATEWAY_ADMIN_SERVICE_PORT": "9901",
    "AGENT_GATEWAY_ADMIN_SERVICE_PORT_ADMIN": "9901",
    "AGENT_GATEWAY_ADMIN_PORT": "tcp://[fd00:10::5]:9901",
    "AGENT_GATEWAY_ADMIN_PORT_9901_TCP": "tcp://[fd00:10::5]:9901",
    "AGENT_GATEWAY_ADMIN_PORT_9901_TCP_PROTO": "tcp",
    "AGENT_GATEWAY_ADMIN_PORT_9901_TCP_PORT": "9901",
    "AGENT_GATEWAY_ADMIN_PORT_9901_TCP_ADDR": "fd00:10::5",
    "AGENT_GATEWAY_DNS_SERVICE_HOST": "10.0.0.3",
    "AGENT_GATEWAY_DNS_SERVICE_PORT": "53",
    "AGENT_GATEWAY_DNS_SERVICE_PORT_DNS": "53",
    "AGENT_GATEWAY_DNS_PORT": "udp://10.0.0.3:53",
    "AGENT_GATEWAY_DNS_PORT_53_UDP": "udp://10.0.0.3:53",
    "AGENT_GATEWAY_DNS_PORT_53_UDP_PROTO": "udp",
    "AGENT_GATEWAY_DNS_PORT_53_UDP_PORT": "53",
    "AGENT_GATEWAY_DNS_PORT_53_UDP_ADDR": "10.0.0.3",
}


def test_yaml_then_environment_then_overrides(tmp_path: Path) -> None:
    path = tmp_path / "gateway.yaml"
    path.write_text(
        "listen: {port: 8081}\nlimits: {max_body_bytes: 1000}\n"
        "routes:\n  - {name: writer, upstream: 'http://127.0.0.1:9000/'}\n"
    )
    environ = {"AGENT_GATEWAY_LISTEN__PORT": "8082", "AGENT_GATEWAY_ADMIN_TOKEN": "s3cret", "UNRELATED": "x"}
    config = load_config(path, environ=environ, overrides={"limits": {"max_violations": 7}})
    assert config.listen.port == 8082
    assert config.admin.token is not None
    assert config.admin.token.get_secret_value() == "s3cret"
    assert "s3cret" not in repr(config)
    assert (config.limits.max_body_bytes, config.limits.max_violations) == (1000, 7)
    assert config.routes[0].upstream == "http://127.0.0.1:9000"
    assert config.routes[0].effective_prefix == "/writer"


def test_defaults_are_safe() -> None:
    config = load_config(environ={})
    assert config.admin.host == "127.0.0.1"
    assert config.admin.token is None
    assert config.limits.max_body_bytes == 10 * 1024 * 1024


def test_kubernetes_service_links_do_not_stop_start_up() -> None:
    assert load_config(environ=KUBERNETES_ENV) == load_config(environ={})
    settings = {"AGENT_GATEWAY_LISTEN__PORT": "8081", "AGENT_GATEWAY_ADMIN__PORT": "9902"}
    config = load_config(environ={**KUBERNETES_ENV, **settings})
    assert (config.listen.port, config.admin.port) == (8081, 9902)
    assert all(is_service_link(name, value) for name, value in KUBERNETES_ENV.items())


@pytest.mark.parametrize(
    ("environ", "fragments"),
    [
        ({"AGENT_GATEWAY_LISTEN__PORT": "eighty"}, ["listen.port", "integer", "'eighty'"]),
        ({"AGENT_GATEWAY_LIMITS__MAX_BODY_BYTES": "-1"}, ["limits.max_body_bytes", "greater than 0"]),
        ({"AGENT_GATEWAY_NO_SUCH_SETTING": "1"}, ["unknown setting 'no_such_setting'"]),
        ({"AGENT_GATEWAY_LISTEN__PROT": "8081"}, ["unknown setting 'listen.prot'"]),
        ({"AGENT_GATEWAY_LISTEN": "0.0.0.0"}, ["unknown setting 'listen'"]),
        ({"AGENT_GATEWAY_LOG_LEVEL": "LOUD"}, ["log_level", "must be one of"]),
        # a user's guess at the port is not a service link: Kubernetes puts an address there, never a bare port
        ({"AGENT_GATEWAY_PORT": "8081"}, ["unknown setting 'port'"]),
        # link-shaped names whose value does not agree with the name are not links either
        ({"AGENT_GATEWAY_SERVICE_HOST": "gateway.local"}, ["unknown setting 'service_host'"]),
        ({"AGENT_GATEWAY_PORT_8080_TCP": "tcp://10.0.0.2:9901"}, ["unknown setting 'port_8080_tcp'"]),
        ({"AGENT_GATEWAY_PORT_8080_TCP_PROTO": "udp"}, ["unknown setting"]),
        ({"AGENT_GATEWAY_ADMIN_TOKEN": "a", "AGENT_GATEWAY_ADMIN__TOKEN": "b"}, ["admin.token is also set by"]),
    ],
)
def test_bad_variables_are_refused_in_one_line(environ: dict[str, str], fragments: list[str]) -> None:
    with pytest.raises(ConfigError) as refused:
        load_config(environ={**KUBERNETES_ENV, **environ})
    message = str(refused.value)
    assert "\n" not in message
    assert message.startswith(tuple(f"{name}: " for name in environ)), message
    for fragment in fragments:
        assert fragment in message


def test_retired_names_are_not_read_but_named() -> None:
    retired = {"GATEWAY_ADMIN_TOKEN": "s3cret", "GATEWAY_LISTEN__PORT": "8081", "GATEWAY_ADMIN_URL": "x:1"}
    environ = {**KUBERNETES_ENV, **retired}
    config = load_config(environ=environ)
    assert config.admin.token is None
    assert config.listen.port == 8080
    warnings = retired_variables(environ)
    assert len(warnings) == 3  # none for the `gateway` Service's links (GATEWAY_PORT, GATEWAY_SERVICE_HOST...)
    assert any(w.startswith("GATEWAY_ADMIN_TOKEN ") and "AGENT_GATEWAY_ADMIN_TOKEN" in w for w in warnings)
    assert any("AGENT_GATEWAY_LISTEN__PORT" in w for w in warnings)
    assert not any("s3cret" in w for w in warnings)
    assert retired_variables(KUBERNETES_ENV) == []


@pytest.mark.parametrize(
    ("text", "fragments"),
    [
        ("listen: {port: 80\n", ["not valid YAML", "line 2, column 1"]),
        ("- listen\n- admin\n", ["top level must be a mapping", "not a list"]),
        ("just a string\n", ["top level must be a mapping", "not a str"]),
        ("listen: {bogus: 1}\n", ["listen.bogus: unknown setting"]),
        ("listen: {port: eighty}\n", ["listen.port:", "integer", "'eighty'"]),
        ("listen: [8080]\n", ["listen:", "dictionary"]),
        ("routes:\n  - {name: a, upstream: 'ftp://h'}\n", ["routes[0].upstream:", "http:// or https://"]),
        ("routes:\n  - {name: a, upstream: 'http://h:abc'}\n", ["routes[0].upstream:", "not a valid URL"]),
        ("routes:\n  - {name: a, upstream: 'http://'}\n", ["routes[0].upstream:", "no host"]),
        ("store: {url: 'localhost:6379'}\n", ["store.url:", "redis://"]),
        ("log_level: LOUD\n", ["log_level:", "must be one of"]),
        ("admin: {token: [1, 2]}\n", ["admin.token:"]),
    ],
)
def test_bad_files_are_refused_in_one_line(tmp_path: Path, text: str, fragments: list[str]) -> None:
    path = tmp_path / "gateway.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as refused:
        load_config(path, environ={})
    message = str(refused.value)
    assert "\n" not in message
    assert message.startswith(f"{path}: ")
    for fragment in fragments:
        assert fragment in message


def test_missing_or_unreadable_files_are_one_line(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"missing\.yaml: no such file$"):
        load_config(tmp_path / "missing.yaml", environ={})
    with pytest.raises(ConfigError, match="cannot read it"):
        load_config(tmp_path, environ={})


def test_errors_name_the_source_of_the_value(tmp_path: Path) -> None:
    path = tmp_path / "gateway.yaml"
    path.write_text("listen: {port: 8080}\n")
    with pytest.raises(ConfigError, match=r"^command line: listen\.port: .*65535"):
        load_config(path, environ={}, overrides={"listen": {"port": 70000}})
    with pytest.raises(ConfigError, match=r"^AGENT_GATEWAY_LISTEN__PORT: listen\.port:"):
        load_config(path, environ={"AGENT_GATEWAY_LISTEN__PORT": "-1"})


def test_a_token_is_never_quoted_in_an_error() -> None:
    with pytest.raises(ConfigError) as refused:
        load_config(environ={"AGENT_GATEWAY_ADMIN__TOKEN_X": "s3cret"})
    assert "s3cret" not in str(refused.value)


def test_route_rules() -> None:
    with pytest.raises(ValidationError):
        RouteSpec(name="x", upstream="ftp://host")
    with pytest.raises(ValidationError):
        RouteSpec(name="x", upstream="http://h", prefix="no-slash")
    assert RouteSpec(name="x", upstream="http://h", default=True).effective_prefix == ""
    with pytest.raises(ConfigError, match=r"^command line: routes: at most one route"):
        load_config(
            environ={},
            overrides={"routes": [{"name": n, "upstream": "http://h", "default": True} for n in "ab"]},
        )
    with pytest.raises(ValidationError, match="route names must be unique"):
        GatewayConfig.model_validate({"routes": [{"name": "a", "upstream": "http://h"}] * 2})
