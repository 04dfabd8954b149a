"""A small client for the admin API, used by the CLI and the demo.

Every way a call can go wrong ends in one of three exceptions whose message is one line, so the CLI never shows
a traceback: :class:`AdminURLError` (the admin URL is unusable: a usage error), :class:`AdminUnavailable`
(nothing answered, or what answered is not the admin API: a runtime failure) and :class:`AdminAPIError` (the
admin API refused with a problem document). The admin API answers every call with a JSON object (or an empty
204), so any other answer means the URL points at something else.

The URL comes from ``--admin-url``, else ``AGENT_GATEWAY_ADMIN_URL``, else ``http://127.0.0.1:9901``; one
without a scheme (``127.0.0.1:9901``, ``gateway-admin:9901``) means ``http://``, as ``curl`` reads it.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from types import TracebackType
from typing import Any

import aiohttp
import orjson
from yarl import URL

from gateway.config import ADMIN_TOKEN_VARIABLE, ADMIN_URL_VARIABLE

DEFAULT_ADMIN_URL = "http://127.0.0.1:9901"
_TIMEOUT = aiohttp.ClientTimeout(total=None, sock_connect=10, sock_read=300)
"""A silent peer fails the call instead of hanging it; reads stay generous for large registrations."""


class AdminAPIError(Exception):
    """The admin API answered with a problem document."""

    def __init__(self, status: int, problem: Mapping[str, Any]) -> None:
        super().__init__(f"{status}: {problem.get('detail') or problem.get('title')}")
        self.status = status
        self.problem = problem


class AdminURLError(ValueError):
    """The admin URL given is not an http(s) URL with a host."""


class AdminUnavailable(Exception):
    """Nothing answered at the admin URL, or what answered is not the admin API."""


def _one_line(text: str) -> str:
    return " ".join(text.split())


def admin_base_url(value: str | None = None, environ: Mapping[str, str] | None = None) -> str:
    """The admin API's base URL from ``value`` (the ``--admin-url`` flag), the environment or the default."""
    environ = os.environ if environ is None else environ
    source, raw = ("--admin-url", value) if value else (ADMIN_URL_VARIABLE, environ.get(ADMIN_URL_VARIABLE))
    if not raw:
        return DEFAULT_ADMIN_URL
    text = raw.strip()
    try:
        url = URL(text if "://" in text else f"http://{text}")
        url.port  # noqa: B018 - parsing the port is the check
    except ValueError as exc:
        raise AdminURLError(f"{source}: {raw!r} is not a URL: {_one_line(str(exc))}") from None
    if url.scheme not in ("http", "https") or not url.host or any(c.isspace() for c in text):
        raise AdminURLError(f"{source}: {raw!r} is not an http(s) URL with a host, e.g. http://127.0.0.1:9901")
    if url.query_string or url.fragment:
        raise AdminURLError(f"{source}: {raw!r} has a query or fragment; give the admin API's base URL")
    return str(url).rstrip("/")


class AdminClient:
    def __init__(self, base_url: str | None = None, token: str | None = None) -> None:
        self.base_url = admin_base_url(base_url)
        token = token if token is not None else os.environ.get(ADMIN_TOKEN_VARIABLE)
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._session = aiohttp.ClientSession(headers=headers, timeout=_TIMEOUT)

    async def __aenter__(self) -> AdminClient:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self._session.close()

    async def request(self, method: str, path: str, *, body: Any = None, raw: bytes | None = None) -> Any:
        data = raw if raw is not None else (orjson.dumps(body) if body is not None else None)
        headers = {"Content-Type": "application/json"} if data is not None else {}
        try:
            async with self._session.request(method, self.base_url + path, data=data, headers=headers) as resp:
                payload = await resp.read()
                status, content_type = resp.status, resp.content_type
        except (aiohttp.ClientError, TimeoutError) as exc:
            reason = _one_line(str(exc)) or type(exc).__name__
            raise AdminUnavailable(f"cannot reach the admin API at {self.base_url}: {reason}") from None
        if not payload and status < 400:
            return None
        decoded = self._json_object(payload, content_type)
        if decoded is None:
            answered = f"{content_type} ({len(payload)} bytes)" if payload else "an empty body"
            raise AdminUnavailable(
                f"{method} {self.base_url}{path} answered {status} with {answered}, not the admin API's JSON: "
                f"is {self.base_url} the agent-gateway admin listener?"
            )
        if status >= 400:
            raise AdminAPIError(status, decoded)
        return decoded

    @staticmethod
    def _json_object(payload: bytes, content_type: str) -> dict[str, Any] | None:
        if content_type != "application/json" and not content_type.endswith("+json"):
            return None
        try:
            decoded = orjson.loads(payload)
        except orjson.JSONDecodeError:
            return None
        return decoded if isinstance(decoded, dict) else None

    async def push_contract(self, document_text: bytes, contract_id: str, *, activate: bool = True) -> Any:
        query = "" if activate else "?activate=false"
        return await self.request("PUT", f"/contracts/{contract_id}{query}", raw=document_text)

    async def put_route(self, name: str, spec: Mapping[str, Any]) -> Any:
        return await self.request("PUT", f"/routes/{name}", body=dict(spec))
