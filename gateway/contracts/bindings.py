"""Who holds which binding: the index that refuses a contract overlapping one in force, without a scan.

One request is governed by one contract, so a contract whose route, method, JSON-RPC method/tool and path
template overlap another's (:meth:`~gateway.contracts.paths.PathTemplate.overlaps`) is refused. Checking a new
contract against every contract in force made each registration cost O(contracts); here templates are grouped by
what must be equal for two of them to overlap (route, method, RPC key, specificity) and, inside a group, by shape
(which segments are literal) and decoded literal segments. A template of the same shape overlaps exactly the one
with the same literals: one dict lookup. Templates of another shape in the group (``/{a}/x`` against ``/x/{b}``)
are compared one by one; such groups are rare and small.

Copy-on-write like :class:`~gateway.contracts.matcher.TemplateIndex`: :meth:`Bindings.revised` copies only the
dicts a change touches, so a refused change leaves the bindings in force untouched.
"""

from __future__ import annotations

from collections.abc import Iterable

from gateway.contracts.document import ContractSpec
from gateway.contracts.paths import path_template

RpcKey = tuple[str, str | None]
"""A JSON-RPC method and, for MCP ``tools/call``, the tool."""
Group = tuple[str, str, RpcKey | None, tuple[int, int]]
Shape = tuple[bool, ...]
Literals = tuple[str | None, ...]
_Copied = tuple[set[Group], set[tuple[Group, Shape]]]
"""The groups, and the shapes within them, already copied by one revision."""


def binding_of(spec: ContractSpec) -> tuple[Group, Literals]:
    """What ``spec`` binds: its overlap group and its template's decoded segments (``None`` for a parameter)."""
    template = path_template(spec.operation.path)
    rpc = (spec.rpc.method, spec.rpc.tool) if spec.rpc is not None else None
    return (spec.route, spec.operation.method.upper(), rpc, template.specificity), template.segments


def describe(spec: ContractSpec) -> str:
    """A binding as messages name it: ``POST /tasks/{id} (tools/call add) on route 'agent'``."""
    what = f" ({spec.rpc.name})" if spec.rpc is not None else ""
    return f"{spec.operation.method.upper()} {spec.operation.path}{what} on route {spec.route!r}"


class Bindings:
    """Immutable: each contract id in force and the binding it holds."""

    __slots__ = ("_groups", "_where")

    def __init__(self) -> None:
        self._groups: dict[Group, dict[Shape, dict[Literals, str]]] = {}
        self._where: dict[str, tuple[Group, Shape, Literals]] = {}

    def revised(
        self, removed: Iterable[str], added: Iterable[ContractSpec]
    ) -> tuple[Bindings, list[tuple[ContractSpec, str]]]:
        """The bindings without the ids in ``removed`` (and the old bindings of the ids in ``added``), then with
        each spec of ``added``, in order, holding its binding unless one held already overlaps it: those are
        returned as ``(claimant, holder id)`` and left out. Bindings held here keep theirs; between two specs of
        ``added``, the first wins."""
        revised = Bindings()
        revised._groups, revised._where = dict(self._groups), dict(self._where)
        copied: _Copied = (set(), set())
        added = list(added)
        for doc_id in [*removed, *(spec.id for spec in added)]:
            if doc_id in revised._where:
                group, shape, literals = revised._where.pop(doc_id)
                del revised._held(group, shape, copied)[literals]
        conflicts = []
        for spec in added:
            group, literals = binding_of(spec)
            holder = revised._holder(group, literals)
            if holder is not None:
                conflicts.append((spec, holder))
                continue
            shape = _shape(literals)
            revised._held(group, shape, copied)[literals] = spec.id
            revised._where[spec.id] = (group, shape, literals)
        for group, shape in copied[1]:  # no empty dict left behind to be looked at by later checks
            if not revised._groups[group][shape]:
                del revised._groups[group][shape]
            if not revised._groups[group]:
                del revised._groups[group]
        return revised, conflicts

    def _held(self, group: Group, shape: Shape, copied: _Copied) -> dict[Literals, str]:
        """The dict of ``group``/``shape`` for writing: copied on first use, so the original stays as it was."""
        groups, shapes = copied
        if (group, shape) not in shapes:
            if group not in groups:
                groups.add(group)
                self._groups[group] = dict(self._groups.get(group, {}))
            shapes.add((group, shape))
            self._groups[group][shape] = dict(self._groups[group].get(shape, {}))
        return self._groups[group][shape]

    def _holder(self, group: Group, literals: Literals) -> str | None:
        shape = _shape(literals)
        for other_shape, held in self._groups.get(group, {}).items():
            if other_shape == shape:
                if literals in held:
                    return held[literals]
                continue
            for other, holder in held.items():
                if all(a is None or b is None or a == b for a, b in zip(literals, other, strict=True)):
                    return holder
        return None


def _shape(literals: Literals) -> Shape:
    return tuple(seg is not None for seg in literals)
