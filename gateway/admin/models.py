"""Typed shapes of the admin API's JSON bodies; the OpenAPI document is generated from these."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from gateway.store.base import HandoffRecord


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Health(_Model):
    status: Literal["ok", "starting"]
    routes: int = 0
    contracts: int = 0


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
    version: int = Field(gt=0)


class ValidateRequest(_Model):
    """A dry run: the payload is checked exactly as the data plane would, nothing is forwarded."""

    direction: Literal["request", "response"] = "request"
    payload: Any = None
    status: int = Field(200, ge=100, le=599, description="response status whose schema applies")
    version: int | None = Field(None, gt=0, description="defaults to the active version")
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
