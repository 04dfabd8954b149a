"""``POST /contracts/{id}/fuzz``: the ``contracts fuzz`` command run by the gateway, on a bounded budget.

The gateway compiles the contract as its data plane does (shared schemas of every contract in force included), so
a contract that ``$ref``s another's schema is fuzzed exactly as it is enforced. The budget is capped
(:data:`MAX_EXAMPLES`, :data:`MAX_SECONDS`) because the caller waits on one HTTP request; hypothesis runs in a
worker thread and the requests are sent from the admin loop, which keeps serving meanwhile. The endpoint makes
the gateway send requests to the URL it is given: that is why it sits behind the admin token like every other.
At most :data:`gateway.fuzz.run.MAX_CONCURRENT_RUNS` runs at once per process (they share the fuzzer's threads);
another is refused with a 429 and ``Retry-After`` rather than queued behind runs that may each take a minute.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Literal

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field

from gateway.admin.api import Endpoint, json_response, parse_body
from gateway.admin.common import INT64, compiled_contract
from gateway.admin.models import UPSTREAM_PATTERN
from gateway.contracts.document import contract_meta_schema
from gateway.control.versioning import MAX_VERSION
from gateway.errors import AdminError
from gateway.fuzz.report import FuzzReport
from gateway.outcomes import Verdict

MAX_EXAMPLES = 200
MAX_SECONDS = 30.0
MISSING_EXTRAS = "fuzzing needs hypothesis and hypothesis-jsonschema: pip install 'agent-gateway[fuzz]'"


class TooManyRuns(AdminError):
    """Every fuzz slot of this process is taken; the caller retries once one of them is done."""

    def __init__(self, limit: int) -> None:
        super().__init__(429, f"{limit} fuzz runs are already running.", kind="too-many-runs", title="Busy")

    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(int(MAX_SECONDS))}


class _Slots:
    """How many fuzz runs this process has in flight (one event loop, so a plain counter is enough)."""

    def __init__(self) -> None:
        self.taken = 0

    @contextmanager
    def claim(self, limit: int) -> Iterator[None]:
        if self.taken >= limit:
            raise TooManyRuns(limit)
        self.taken += 1
        try:
            yield
        finally:
            self.taken -= 1


SLOTS = _Slots()


class FuzzRequest(BaseModel):
    """Where to send and how much: the command line's options, bounded."""

    model_config = ConfigDict(extra="forbid", strict=True)

    against: str = Field(pattern=UPSTREAM_PATTERN, max_length=2048, description="agent base URL; the path is appended")
    max_examples: int = Field(50, ge=1, le=MAX_EXAMPLES)
    seconds: float = Field(10.0, gt=0, le=MAX_SECONDS)
    seed: int = Field(0, ge=INT64[0], le=INT64[1])
    near_valid: Literal["require", "report", "off"] = "report"
    timeout: float = Field(5.0, gt=0, le=MAX_SECONDS, description="seconds to wait for each answer")
    version: int | None = Field(None, ge=1, le=MAX_VERSION, description="defaults to the active version")


async def fuzz_contract(request: web.Request) -> web.Response:
    body = await parse_body(request, FuzzRequest)
    contract_id = request.match_info["id"]
    contract = await compiled_contract(request, contract_id, body.version)
    try:
        from gateway.fuzz import run
    except ImportError as exc:
        raise AdminError(501, MISSING_EXTRAS, kind="not-implemented", title="Fuzzing not installed") from exc
    options = run.FuzzOptions(max_examples=body.max_examples, seconds=body.seconds, seed=body.seed,
                              near_valid=body.near_valid, timeout=body.timeout)  # fmt: skip
    try:
        with SLOTS.claim(run.MAX_CONCURRENT_RUNS):
            report = await run.run_fuzz(contract, body.against, options)
    except run.TargetUnreachable as exc:
        raise AdminError(502, str(exc), kind=Verdict.UPSTREAM_ERROR.value, title="Fuzz target unreachable") from exc
    except ValueError as exc:
        raise AdminError(400, str(exc), kind="nothing-to-fuzz", title="Contract cannot be fuzzed") from exc
    return json_response(report)


ENDPOINTS = (
    Endpoint(
        "POST",
        "/contracts/{id}/fuzz",
        "Send generated requests to an agent and check its answers against a contract",
        fuzz_contract,
        body=FuzzRequest,
        response=FuzzReport,
        params={"id": contract_meta_schema()["properties"]["id"]},
        errors=frozenset({429, 501, 502}),
    ),
)
