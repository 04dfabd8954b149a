"""Contract endpoints: the shared versioned-document ones plus a dry run through the data plane's validators."""

from __future__ import annotations

from dataclasses import dataclass

import orjson
from aiohttp import web
from jsonschema.validators import Draft202012Validator
from multidict import CIMultiDict, CIMultiDictProxy, MultiDict

from gateway.admin.api import Endpoint, json_response, parse_body
from gateway.admin.common import compiled_contract, state_of
from gateway.admin.documents import versioned_endpoints
from gateway.admin.models import ValidateRequest, ValidateResult, ViolationOut
from gateway.contracts.document import contract_meta_schema
from gateway.contracts.validation import NO_VIOLATIONS, CompiledContract, Verdict


async def validate_payload(request: web.Request) -> web.Response:
    """Dry-run a payload through the same validators the data plane uses; returns the verdict."""
    body = await parse_body(request, ValidateRequest)
    contract_id = request.match_info["id"]
    contract = await compiled_contract(request, contract_id, body.version)
    limits = state_of(request).config.limits
    checked, (violations, total) = await dry_run(contract, body, limits.max_violations, limits.offload_bytes)
    return json_response(
        ValidateResult(
            contract=contract.id, version=contract.version, direction=body.direction, valid=total == 0,
            checked=checked, violations=[ViolationOut(**v.as_dict()) for v in violations], violation_count=total,
        )
    )  # fmt: skip


@dataclass(frozen=True, slots=True)
class DryRunRequest:
    """A dry-run payload seen as a request (satisfies :class:`gateway.contracts.validation.RequestView`)."""

    content_type: str
    headers: CIMultiDictProxy[str]
    query: MultiDict[str]


async def dry_run(
    contract: CompiledContract, body: ValidateRequest, limit: int, offload_bytes: int
) -> tuple[bool, Verdict]:
    """``(checked, (violations, total))``; ``checked`` is false when no schema covers the response status. A
    large payload is checked in the validation pool, as on the data plane: the admin loop serves the probes."""
    payload = None if body.payload is None else orjson.dumps(body.payload)
    if body.direction == "request":
        view = DryRunRequest(body.content_type, CIMultiDictProxy(CIMultiDict(body.headers)), MultiDict(body.query))
        return True, (await contract.check_request_off_loop(view, payload, limit, offload_bytes))[1]
    schema = contract.response_schema(body.status)
    if schema is None:
        return False, NO_VIOLATIONS
    checked = await contract.check_response_off_loop(
        schema, payload or b"", body.content_type, None, limit, offload_bytes
    )
    return True, checked[1]


ENDPOINTS = (
    *versioned_endpoints(
        "contracts",
        "contract",
        lambda state: state.contracts,
        contract_meta_schema(),
        frozenset(Draft202012Validator.FORMAT_CHECKER.checkers),  # what gateway.contracts.document checks with
    ),
    Endpoint(
        "POST",
        "/contracts/{id}/validate",
        "Dry-run a payload against a contract",
        validate_payload,
        body=ValidateRequest,
        response=ValidateResult,
        params={"id": contract_meta_schema()["properties"]["id"]},
    ),
)
