"""Rendering a run timeline (the admin API's ``GET /runs/{id}`` document) for a terminal."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def _detail(handoff: Mapping[str, Any]) -> str:
    violations = handoff.get("violations") or []
    if not violations:
        return ""
    first = violations[0]
    more = handoff.get("violation_count", 1) - 1
    text = f"{first['pointer'] or '/'} {first['keyword']}: {first['message']}"
    return text + (f" (+{more} more)" if more else "")


def render_timeline(run: Mapping[str, Any]) -> str:
    handoffs = run["handoffs"]
    entry = run.get("entry_point")
    entry_id = entry["id"] if entry else None
    downstream = set(run.get("downstream", ()))
    start = handoffs[0]["started_at"] if handoffs else 0.0
    lines = [f"Run {run['run_id']}: {len(handoffs)} handoff(s)"]
    if entry:
        position = next(i for i, h in enumerate(handoffs, start=1) if h["id"] == entry_id)
        lines.append(
            f"  violation entered at #{position}: {entry['source']} → {entry['target']} ({entry['verdict']}; "
            f"{entry['category']}: {entry['failure_mode']})"
        )
    else:
        lines.append("  no contract violation in this run")
    lines.append(f"    {'#':<3}{'at ms':>8}  {'handoff':<28}{'step':<18}{'HTTP':<5}{'verdict':<18}{'ms':>7}  detail")
    for number, h in enumerate(handoffs, start=1):
        marker = "▶" if h["id"] == entry_id else ("↳" if h["id"] in downstream else " ")
        at = (h["started_at"] - start) * 1000
        contract = f" [{h['contract']} v{h['contract_version']}]" if h.get("contract") else ""
        lines.append(
            f"  {marker} {number:<3}{at:>8.1f}  {h['source'] + ' → ' + h['target']:<28}{h['step'][:17]:<18}"
            f"{h['status']:<5}{h['verdict']:<18}{h['duration_ms']:>7.1f}  {_detail(h)}{contract}".rstrip()
        )
    if downstream:
        lines.append("  ↳ consumed the faulty output downstream of the entry point")
    return "\n".join(lines)
