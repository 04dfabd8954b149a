"""Writing contracts in Python: build a contract document from pydantic models.

Agents written in Python usually already have pydantic models for what they accept and return; the
contract should be derived from them rather than written twice. ``model_json_schema()`` emits draft 2020-12
with local ``$defs``, which the gateway accepts as is.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel

from gateway.contracts.document import Action, Mode, parse_contract


def contract_from_models(
    contract_id: str,
    *,
    route: str,
    method: str,
    path: str,
    request: type[BaseModel] | None = None,
    responses: Mapping[int | str, type[BaseModel]] | None = None,
    failure_modes: Mapping[str, Action] | None = None,
    mode: Mode = "enforce",
    idempotent: bool = False,
    description: str | None = None,
) -> dict[str, Any]:
    """A contract document for one operation; checked before it is returned, so it registers cleanly."""
    document: dict[str, Any] = {
        "id": contract_id,
        "route": route,
        "operation": {"method": method.upper(), "path": path, "idempotent": idempotent},
        "mode": mode,
    }
    if description:
        document["description"] = description
    if request is not None:
        document["request"] = {"body": request.model_json_schema(mode="validation")}
    if responses:
        document["responses"] = {
            str(status): model.model_json_schema(mode="serialization") for status, model in responses.items()
        }
    if failure_modes:
        document["failure_modes"] = dict(failure_modes)
    parse_contract(document)
    return document
