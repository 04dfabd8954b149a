"""Point an A2A agent card's interface URLs at the gateway, so the client's next calls go through it.

A client reads the card, then calls the URL of the interface it picks (A2A spec §8.3.2), not the URL it fetched
the card from. A card relayed unchanged therefore sends every later call straight to the agent: no contract,
retry or audit, and nothing says so. :func:`rewrite_card` replaces the scheme and authority of each interface URL
with the gateway's address for the route, and puts the route's path prefix before the agent's own path:
``http://10.0.0.5:9000/a2a/v1`` behind ``http://gw:8080/research`` becomes ``http://gw:8080/research/a2a/v1``.

Interface URLs, and only those (``provider.url``, ``documentationUrl``, ``iconUrl`` and security-scheme URLs
are the agent's business):

- ``supportedInterfaces[].url``: A2A 1.0 (a2a-sdk 1.x ``AgentCard.supported_interfaces``, ``AgentInterface``);
- ``url`` and ``additionalInterfaces[].url``: A2A 0.3, which the a2a-sdk 1.x server still adds to the card it
  serves for 0.3 clients (``agent_card_to_dict`` merges the 0.3 compat fields).

A **signed** card (non-empty ``signatures``, JWS over the JCS-canonical card, spec §8.4) is left untouched: any
change breaks the signature. The result says so (``signed``), and which URLs will bypass the gateway, for the
caller to log and count. URLs without an ``http``/``https`` scheme (a gRPC ``host:port``) are left too: the
gateway relays HTTP only.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import SplitResult, urlsplit, urlunsplit

from gateway.jsonpointer import join


@dataclass(frozen=True, slots=True)
class UrlChange:
    """One interface URL: where it is in the card, what it was, and what it is now (``after is None``: kept)."""

    pointer: str
    before: str
    after: str | None
    reason: str = ""
    """Why it was kept: ``"signed card"``, ``"not an http(s) URL"``, ``"already the gateway"``."""


@dataclass(frozen=True, slots=True)
class CardRewrite:
    """The card to serve, and every interface URL found in it."""

    card: Any
    changes: tuple[UrlChange, ...]
    signed: bool

    @property
    def rewritten(self) -> tuple[UrlChange, ...]:
        return tuple(c for c in self.changes if c.after is not None)

    @property
    def bypassing(self) -> tuple[UrlChange, ...]:
        """Interface URLs that still point past the gateway (to log and count)."""
        return tuple(c for c in self.changes if c.after is None and c.reason != "already the gateway")


def _locations(card: Mapping[str, Any]) -> list[tuple[list[str | int], str]]:
    found: list[tuple[list[str | int], str]] = []
    if isinstance(card.get("url"), str):
        found.append((["url"], card["url"]))
    for member in ("supportedInterfaces", "additionalInterfaces"):
        interfaces = card.get(member)
        if not isinstance(interfaces, list):
            continue
        for i, interface in enumerate(interfaces):
            if isinstance(interface, Mapping) and isinstance(interface.get("url"), str):
                found.append(([member, i, "url"], interface["url"]))
    return found


def gateway_url(url: str, gateway_base: str) -> str | None:
    """``url`` moved behind ``gateway_base`` (its path after the base's path, query and fragment kept);
    ``None`` when ``url`` is not an absolute http(s) URL."""
    target = urlsplit(url)
    if target.scheme not in ("http", "https") or not target.netloc:
        return None
    base = urlsplit(gateway_base)
    path = base.path.rstrip("/") + (target.path or "/")
    return urlunsplit((base.scheme, base.netloc, path, target.query, target.fragment))


def rewrite_card(card: Any, gateway_base: str) -> CardRewrite:
    """The card with its interface URLs behind ``gateway_base`` (the gateway's public URL for the route,
    including the route prefix). The input is not modified; anything that is not a card passes unchanged."""
    if not isinstance(card, Mapping):
        return CardRewrite(card, (), signed=False)
    base = urlsplit(gateway_base)
    if base.scheme not in ("http", "https") or not base.netloc:
        raise ValueError(f"the gateway base must be an absolute http(s) URL: {gateway_base!r}")
    signed = bool(card.get("signatures"))
    out = copy.deepcopy(dict(card))
    changes: list[UrlChange] = []
    for path, url in _locations(card):
        pointer = join(path)
        after = gateway_url(url, gateway_base)
        if signed:
            changes.append(UrlChange(pointer, url, None, "signed card"))
        elif after is None:
            changes.append(UrlChange(pointer, url, None, "not an http(s) URL"))
        elif _behind(urlsplit(url), base.netloc, base.path.rstrip("/")):
            changes.append(UrlChange(pointer, url, None, "already the gateway"))
        else:
            _set(out, path, after)
            changes.append(UrlChange(pointer, url, after))
    return CardRewrite(out, tuple(changes), signed)


def _behind(url: SplitResult, netloc: str, prefix: str) -> bool:
    """Whether ``url`` already points at the gateway's route (a card rewritten twice stays the same)."""
    return url.netloc == netloc and (url.path == prefix or url.path.startswith(prefix + "/"))


def _set(document: Any, path: list[str | int], value: str) -> None:
    node = document
    for token in path[:-1]:
        node = node[token]
    node[path[-1]] = value
