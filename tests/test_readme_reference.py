"""README.md's reference parts checked against the code they describe.

Why: a newcomer follows the README literally. The configuration table, the admin API table, the command-line
block and the repository links are reference material that drifts silently when a setting, an endpoint or a verb
changes; these tests read the README itself and compare it with the settings model, the generated OpenAPI
document, the argparse tree and the working tree, so a change that forgets the README fails here.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from pydantic import BaseModel, SecretStr

from gateway.app import RunningGateway
from gateway.cli import _parser
from gateway.cli_completion import Node, walk
from gateway.config import GatewayConfig
from tests.conftest import TOKEN

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text(encoding="utf-8")

UNITS = {"s": 1, "KiB": 1024, "MiB": 1024 * 1024, "days": 86400}
"""The units the configuration table writes defaults in, as factors to the settings' own units."""

NOT_IN_OPENAPI = {("GET", "/console/")}
"""Listed in the admin table but static files, not an API operation: the console's page needs no token."""


def section(heading: str) -> str:
    """The text of the ``## heading`` section, up to the next heading of the same level."""
    start = README.index(f"\n## {heading}\n")
    end = README.find("\n## ", start + 1)
    return README[start : end if end >= 0 else len(README)]


def table_rows(text: str, header: str) -> list[list[str]]:
    """The cells of the Markdown table whose header row starts with ``header``, separator row skipped."""
    lines = text[text.index(header) :].splitlines()
    rows: list[list[str]] = []
    for line in lines[2:]:
        if not line.startswith("|"):
            break
        rows.append([cell.strip() for cell in re.split(r"(?<!\\)\|", line.strip())[1:-1]])
    return rows


def config_table() -> list[tuple[str, str]]:
    """(setting path, default as written) for every setting the configuration table names.

    A cell such as ``limits.max_header_line_bytes / max_header_field_bytes`` names siblings: a name without a dot
    takes the first name's parent; a single default is every name's. Parenthesised remarks (``(the image: 9902)``)
    are not defaults.
    """
    pairs: list[tuple[str, str]] = []
    for name_cell, default_cell, _ in table_rows(section("Configuration"), "| setting | default |"):
        names = re.findall(r"`([^`]+)`", re.sub(r"\(.*?\)", "", name_cell))
        parent = names[0].rpartition(".")[0]
        full = [name if "." in name or not parent else f"{parent}.{name}" for name in names]
        defaults = [part.strip() for part in re.sub(r"\(.*?\)", "", default_cell).split(" / ")]
        defaults *= len(full) if len(defaults) == 1 else 1  # one default written for several names
        assert len(full) == len(defaults), f"configuration row {name_cell!r} names {full} but gives {defaults}"
        pairs += zip(full, defaults, strict=True)
    return pairs


def parse_default(written: str) -> Any:
    """The value a default cell means: ``unset`` → None, ``10 MiB`` → bytes, ``7 days`` → seconds, ``[]``, a
    list of several quoted items → a tuple…"""
    items = re.findall(r"`([^`]+)`", written)
    if len(items) > 1:
        return tuple(items)
    text = written.replace("`", "").strip()
    if text == "unset":
        return None
    if text in ("true", "false"):
        return text == "true"
    if text == "[]":
        return ()
    number = re.fullmatch(r"(\d+(?:\.\d+)?)\s*(s|KiB|MiB|days)?", text)
    if number:
        value = float(number[1]) * UNITS.get(number[2] or "", 1)
        return int(value) if value.is_integer() else value
    return text


def setting(config: BaseModel, path: str) -> Any:
    """The default of ``path`` (``audit.max_records``) in ``config``; a KeyError names a setting that is not one."""
    value: Any = config
    for part in path.split("."):
        if not isinstance(value, BaseModel) or part not in type(value).model_fields:
            raise KeyError(path)
        value = getattr(value, part)
    if isinstance(value, SecretStr):
        return value.get_secret_value()
    return tuple(value) if isinstance(value, list | tuple) else value


def test_every_setting_in_the_configuration_table_exists_with_the_stated_default() -> None:
    defaults = GatewayConfig()
    wrong: list[str] = []
    for path, written in config_table():
        try:
            actual = setting(defaults, path)
        except KeyError:
            wrong.append(f"{path}: not a setting")
            continue
        if actual != parse_default(written):
            wrong.append(f"{path}: README says {written}, the default is {actual!r}")
    assert wrong == []


def admin_table() -> set[tuple[str, str]]:
    """(method, path) for every endpoint the admin API table lists, alternatives and optional parts spelled out.

    ``GET /dlq[/{id}]`` is two endpoints, ``POST /dlq/{id}/resolve\\|replay`` two, ``PUT/GET /routes/{name}`` two.
    A path written ``…/activate`` continues the previous item's path and names no method: its method is ``*``.
    """
    endpoints: set[tuple[str, str]] = set()
    previous = ""
    for cell, _ in table_rows(section("Admin API"), "| method & path |"):
        for item in re.findall(r"`([^`]+)`", cell.replace("\\|", "|")):
            methods, path = ("*", previous + item[1:]) if item.startswith("…") else item.split(" ", 1)
            path = path.split("?", 1)[0]
            if not item.startswith("…"):
                previous = path
            for method in methods.split("/"):
                endpoints |= {(method, spelled) for spelled in spell_out(path)}
    return endpoints


def spell_out(path: str) -> list[str]:
    """``/x[/{n}]`` → ``/x``, ``/x/{n}``; ``/b/{name}/open|close`` → ``/b/{name}/open``, ``/b/{name}/close``."""
    optional = re.search(r"\[([^\]]+)\]", path)
    if optional:
        return spell_out(path[: optional.start()] + path[optional.end() :]) + spell_out(
            path[: optional.start()] + optional[1] + path[optional.end() :]
        )
    head, _, last = path.rpartition("/")
    return [f"{head}/{choice}" for choice in last.split("|")] if "|" in last else [path]


def same_endpoint(readme: str, openapi: str) -> bool:
    """Segment by segment, any path parameter (``{id}``, ``{command}``) matches any segment."""
    ours, theirs = readme.strip("/").split("/"), openapi.strip("/").split("/")
    return len(ours) == len(theirs) and all(
        a == b or a.startswith("{") or b.startswith("{") for a, b in zip(ours, theirs, strict=True)
    )


async def test_the_admin_table_and_the_generated_openapi_document_list_the_same_endpoints(
    gateway: RunningGateway, http: aiohttp.ClientSession
) -> None:
    async with http.get(f"{gateway.admin_url}/openapi.json") as resp:
        document = await resp.json()
    served = {(method.upper(), path) for path, ops in document["paths"].items() for method in ops}
    listed = admin_table()
    undocumented = sorted(
        (m, p) for m, p in served if not any(lm in (m, "*") and same_endpoint(lp, p) for lm, lp in listed)
    )
    missing = sorted(
        (m, p)
        for m, p in listed - NOT_IN_OPENAPI
        if not any(m in (sm, "*") and same_endpoint(p, sp) for sm, sp in served)
    )
    assert (missing, undocumented) == ([], [])


def cli_block() -> list[tuple[str, str]]:
    """(command group, one alternative) for each ``a | b`` alternative in the Command line block.

    A line starting with ``|`` continues the group of the line above it.
    """
    block = section("Command line").split("```", 2)[1]
    usages: list[tuple[str, str]] = []
    group = ""
    for line in block.splitlines()[1:]:
        words = line.split()
        if not words:
            continue
        if words[0] == "agent-gateway":
            words = words[1:]
            group = "" if words[0].startswith("-") else words[0]
        alternatives = " ".join(words).removeprefix("|").split(" | ")
        usages += [(group, alternative.strip()) for alternative in alternatives if alternative.strip()]
    return usages


def test_every_verb_and_option_in_the_command_line_block_exists() -> None:
    tree: dict[str, Node] = dict(walk(_parser()))
    wrong: list[str] = []
    for group, usage in cli_block():
        words = usage.removeprefix(group).split() if usage.startswith(group) else usage.split()
        path = group
        if tree[group].commands and words and not words[0].startswith(("-", "[")):
            path = f"{group} {words[0]}".strip()
            if path not in tree:
                wrong.append(f"{path}: no such command")
                continue
        flags = {flag for option in tree[path].options for flag in option.flags}
        wrong += [f"{path} {flag}: no such option" for flag in re.findall(r"--[a-z-]+", usage) if flag not in flags]
    assert wrong == []


def test_every_admin_command_takes_admin_url_and_json() -> None:
    """The README promises both on every command that speaks to the admin API (every one with ``--admin-url``)."""
    tree = dict(walk(_parser()))
    leaves = {path: node for path, node in tree.items() if not node.commands and path}
    admin = [path for path, node in leaves.items() if any("--admin-url" in o.flags for o in node.options)]
    assert admin, "no command takes --admin-url"
    without_json = [path for path in admin if not any("--json" in o.flags for o in leaves[path].options)]
    assert without_json == []


def relative_links() -> list[str]:
    """Every Markdown link target in the README that is a path in this repository (fragments dropped)."""
    targets = re.findall(r"\]\(([^)\s]+)\)", README)
    return sorted({t.split("#", 1)[0] for t in targets if not re.match(r"[a-z]+:|#", t)})


@pytest.mark.parametrize("target", relative_links())
def test_every_relative_link_exists(target: str) -> None:
    assert (ROOT / target).exists(), f"README links to {target}, which is not in the repository"


def test_the_readme_has_relative_links_to_check() -> None:
    """Guards the parametrised test above: a broken link pattern would otherwise make it check nothing."""
    assert "gateway/dataplane/proxy.py" in relative_links()


async def test_the_metrics_the_readme_names_are_the_metrics_served(
    gateway: RunningGateway, http: aiohttp.ClientSession
) -> None:
    """Dashboards and alerts are written from the README's names: each must be served, and each served one named."""
    async with http.get(f"{gateway.admin_url}/metrics", headers={"Authorization": f"Bearer {TOKEN}"}) as resp:
        exposition = await resp.text()
    served = set(re.findall(r"^# TYPE (agent_gateway_\w+) ", exposition, re.MULTILINE))
    named = set(re.findall(r"\bagent_gateway_[a-z_]+[a-z]", README))
    assert (sorted(named - served), sorted(served - named)) == ([], [])
