"""Bearer-token authentication for the admin API, compared in constant time."""

from __future__ import annotations

import hmac

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

from gateway.errors import AdminError, problem_response


def token_auth_middleware(*, token: str | None, public: frozenset[str]) -> Middleware:
    """Refuse every request but ``public`` paths without ``Authorization: Bearer <token>``.

    ``token=None`` turns authentication off; the caller only allows that on a loopback listener.
    """
    expected = token.encode() if token is not None else None

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        if expected is None or request.path in public:
            return await handler(request)
        scheme, _, presented = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(presented.strip().encode(), expected):
            error = AdminError(
                401, "A valid admin bearer token is required.", kind="unauthorized", title="Unauthorized"
            )
            return problem_response(error, None)
        return await handler(request)

    return middleware
