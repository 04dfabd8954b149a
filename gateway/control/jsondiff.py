"""The difference between two JSON documents as a list of JSON-pointer changes (what a dry run shows).

Each change is ``{"op": "add" | "remove" | "replace", "path": pointer, "old"?: value, "value"?: value}``: the
``op``/``path``/``value`` members read as RFC 6902 JSON Patch operations that turn the old document into the new
one, and ``old`` carries what was there, so a reviewer sees both sides without fetching the active version.
Objects are compared member by member (sorted, so the list is stable), arrays position by position: a change
in the middle of an array is a ``replace`` of each shifted item, which is exact and simple rather than minimal.
"""

from __future__ import annotations

from typing import Any

Change = dict[str, Any]


def escape(token: str) -> str:
    """A reference token as RFC 6901 spells it (``~`` is ``~0``, ``/`` is ``~1``)."""
    return token.replace("~", "~0").replace("/", "~1")


def json_changes(old: Any, new: Any, path: str = "") -> list[Change]:
    """The changes that turn ``old`` into ``new`` (empty when they are equal)."""
    if isinstance(old, dict) and isinstance(new, dict):
        changes: list[Change] = []
        for key in sorted(old.keys() | new.keys()):
            where = f"{path}/{escape(key)}"
            if key not in new:
                changes.append({"op": "remove", "path": where, "old": old[key]})
            elif key not in old:
                changes.append({"op": "add", "path": where, "value": new[key]})
            else:
                changes += json_changes(old[key], new[key], where)
        return changes
    if isinstance(old, list) and isinstance(new, list):
        changes = []
        for index in range(min(len(old), len(new))):
            changes += json_changes(old[index], new[index], f"{path}/{index}")
        changes += [{"op": "add", "path": f"{path}/{i}", "value": new[i]} for i in range(len(old), len(new))]
        # removed from the end backwards, so each pointer is valid when its removal is applied in order
        changes += [{"op": "remove", "path": f"{path}/{i}", "old": old[i]} for i in reversed(range(len(new), len(old)))]
        return changes
    if old == new and type(old) is type(new):  # 1 == 1.0 == True in Python, not in a schema
        return []
    return [{"op": "replace", "path": path, "old": old, "value": new}]
