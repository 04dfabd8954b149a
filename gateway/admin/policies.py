"""Policy endpoints: the shared versioned-document ones (``/policies``)."""

from __future__ import annotations

from gateway.admin.documents import versioned_endpoints
from gateway.policies.document import policy_meta_schema

ENDPOINTS = tuple(
    # gateway.policies.document validates without a format checker: no ``format`` is enforced
    versioned_endpoints("policies", "policy", lambda state: state.policies, policy_meta_schema(), frozenset())
)
