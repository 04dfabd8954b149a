"""Settings: YAML, ``GATEWAY_*`` overrides, validation of bad values."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from gateway.config import RouteSpec, load_config


def test_yaml_then_environment_then_overrides(tmp_path: Path) -> None:
    path = tmp_path / "gateway.yaml"
    path.write_text(
        "listen: {port: 8081}\nlimits: {max_body_bytes: 1000}\n"
        "routes:\n  - {name: writer, upstream: 'http://127.0.0.1:9000/'}\n"
    )
    environ = {"GATEWAY_LISTEN__PORT": "8082", "GATEWAY_ADMIN_TOKEN": "s3cret", "UNRELATED": "x"}
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


@pytest.mark.parametrize(
    "environ",
    [
        {"GATEWAY_LISTEN__PORT": "eighty"},
        {"GATEWAY_LIMITS__MAX_BODY_BYTES": "-1"},
        {"GATEWAY_NO_SUCH_SETTING": "1"},
    ],
)
def test_bad_settings_are_refused(environ: dict[str, str]) -> None:
    with pytest.raises(ValidationError):
        load_config(environ=environ)


def test_route_rules() -> None:
    with pytest.raises(ValidationError):
        RouteSpec(name="x", upstream="ftp://host")
    with pytest.raises(ValidationError):
        RouteSpec(name="x", upstream="http://h", prefix="no-slash")
    assert RouteSpec(name="x", upstream="http://h", default=True).effective_prefix == ""
    with pytest.raises(ValidationError, match="at most one route"):
        load_config(
            environ={},
            overrides={"routes": [{"name": n, "upstream": "http://h", "default": True} for n in "ab"]},
        )
