"""Typed shapes of the admin API's JSON bodies; the OpenAPI document is generated from these."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, create_model

from gateway.admin.common import json_problem
from gateway.config import RouteSpec
from gateway.control.versioning import MAX_VERSION
from gateway.store.base import HandoffRecord

UPSTREAM_PATTERN = r"^https?://(\[[0-9A-Fa-f:.]+\]|[^\s/?#\[\]]+)(:[0-9]{1,5})?([/?#]\S*)?$"
"""An http(s) URL with a host (brackets only around an IPv6 literal) and no white space."""
MAX_CONCURRENCY = 1_000_000
"""Largest ``max_concurrency`` a route may declare (more in flight than any host serves)."""


def _plain_json(value: Any) -> Any:
    """Refuse a value a store or orjson cannot keep as it was sent (huge integers, NaN)."""
    found = json_problem(value)
    if found is not None:
        raise ValueError(f"at {found[0] or '/'}: {found[1]}")
    return value


JsonValue = Annotated[Any, AfterValidator(_plain_json)]
Version = Annotated[int, Field(ge=1, le=MAX_VERSION)]


class _Model(BaseModel):
    """Strict: ``"1"`` is not an integer and ``0`` not a boolean, as the OpenAPI document says."""

    model_config = ConfigDict(extra="forbid", strict=True)


class Liveness(_Model):
    """The process answers; deliberately no counts (they live in ``/readyz``, which reads the tables)."""

    status: Literal["ok"]


class Health(_Model):
    status: Literal["ok", "starting"]
    routes: int
    contracts: int


class DocumentSummary(_Model):
    id: str
    latest_version: int
    active_version: int | None = Field(description="null when the document was deleted (taken out of force)")


class DocumentVersion(_Model):
    id: str
    version: int
    active: bool
    created_at: float
    document: dict[str, Any]


class DocumentVersionList(_Model):
    id: str
    versions: list[DocumentVersion]


class Registered(_Model):
    id: str
    version: int
    active: bool


class RegisteredList(_Model):
    registered: list[Registered]


class ActivateRequest(_Model):
    version: Version


class ValidateRequest(_Model):
    """A dry run: the payload is checked exactly as the data plane would, nothing is forwarded."""

    direction: Literal["request", "response"] = "request"
    payload: JsonValue = None
    status: int = Field(200, ge=100, le=599, description="response status whose schema applies")
    version: Version | None = Field(None, description="defaults to the active version")
    content_type: str = "application/json"
    headers: dict[str, str] = Field(default_factory=dict)
    query: dict[str, str] = Field(default_factory=dict)


class ViolationOut(_Model):
    pointer: str
    keyword: str
    message: str


class ValidateResult(_Model):
    contract: str
    version: int
    direction: Literal["request", "response"]
    valid: bool
    checked: bool = Field(description="false when no schema applies (e.g. a response status with none)")
    violations: list[ViolationOut]
    violation_count: int


def _route_body() -> type[BaseModel]:
    """``PUT /routes/{name}``'s body: every field of :class:`RouteSpec` but the name (the path's), so a field
    added to routes is settable here too; the URL pattern and the concurrency bound are stated for OpenAPI."""
    fields: dict[str, Any] = {n: (f.annotation, f) for n, f in RouteSpec.model_fields.items() if n != "name"}
    fields["upstream"] = (str, Field(pattern=UPSTREAM_PATTERN, max_length=2048, description="http(s) URL"))
    fields["max_concurrency"] = (int | None, Field(None, ge=1, le=MAX_CONCURRENCY))
    body: type[BaseModel] = create_model("RouteBody", __base__=_Model, **fields)
    return body


RouteBody = _route_body()


class RouteList(_Model):
    routes: list[dict[str, Any]]


class RunOut(_Model):
    run_id: str
    first_at: float
    last_at: float
    handoffs: int
    failures: int


class RunList(_Model):
    runs: list[RunOut]


class RunTimelineOut(_Model):
    """A run's handoffs in order, where a violation first entered, and the handoffs downstream of it."""

    run_id: str
    handoffs: list[HandoffRecord]
    entry_point: HandoffRecord | None
    downstream: list[str] = Field(description="ids of later handoffs that consumed the faulty output")


class FailureBucket(_Model):
    route: str
    category: str
    mode: str
    count: int


class FailureStats(_Model):
    window_seconds: float
    total: int
    by_category: dict[str, int]
    failures: list[FailureBucket]
