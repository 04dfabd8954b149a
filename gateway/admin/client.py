"""A small client for the admin API, used by the CLI and the demo."""

from __future__ import annotations

import os
from collections.abc import Mapping
from types import TracebackType
from typing import Any

import aiohttp
import orjson

DEFAULT_ADMIN_URL = "http://127.0.0.1:9901"


class AdminAPIError(Exception):
    """The admin API answered with a problem document."""

    def __init__(self, status: int, problem: Mapping[str, Any]) -> None:
        super().__init__(f"{status}: {problem.get('detail') or problem.get('title')}")
        self.status = status
        self.problem = problem


class AdminClient:
    def __init__(self, base_url: str | None = None, token: str | None = None) -> None:
        self.base_url = (base_url or os.environ.get("GATEWAY_ADMIN_URL") or DEFAULT_ADMIN_URL).rstrip("/")
        token = token if token is not None else os.environ.get("GATEWAY_ADMIN_TOKEN")
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._session = aiohttp.ClientSession(headers=headers)

    async def __aenter__(self) -> AdminClient:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self._session.close()

    async def request(self, method: str, path: str, *, body: Any = None, raw: bytes | None = None) -> Any:
        data = raw if raw is not None else (orjson.dumps(body) if body is not None else None)
        headers = {"Content-Type": "application/json"} if data is not None else {}
        async with self._session.request(method, self.base_url + path, data=data, headers=headers) as resp:
            payload = await resp.read()
            decoded = orjson.loads(payload) if payload else None
            if resp.status >= 400:
                raise AdminAPIError(resp.status, decoded if isinstance(decoded, dict) else {"detail": payload})
            return decoded

    async def push_contract(self, document_text: bytes, contract_id: str, *, activate: bool = True) -> Any:
        query = "" if activate else "?activate=false"
        return await self.request("PUT", f"/contracts/{contract_id}{query}", raw=document_text)

    async def put_route(self, name: str, spec: Mapping[str, Any]) -> Any:
        return await self.request("PUT", f"/routes/{name}", body=dict(spec))
