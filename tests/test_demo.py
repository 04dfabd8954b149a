"""The demo in-process: its report speaks one vocabulary, and its parts import each other in one direction."""

from __future__ import annotations

import ast
import io
import re
from pathlib import Path

from gateway.demo.pipeline import run_demo
from gateway.outcomes import Verdict

REPO = Path(__file__).resolve().parent.parent
ROW = re.compile(r"^  (\d+) +(\S+) → (\S+) +(\d{3}) +(\S+)")


async def test_the_verdict_column_shows_verdicts_only() -> None:
    out = io.StringIO()
    assert await run_demo(REPO / "contracts", REPO / "policies", out) == 0
    rows = [m.groups() for line in out.getvalue().splitlines() if (m := ROW.match(line))]
    verdicts = {row[4] for row in rows}
    assert len(rows) == 39
    assert verdicts <= {v.value for v in Verdict}, verdicts - {v.value for v in Verdict}
    breaker = [(int(status), verdict) for _, source, target, status, verdict in rows if target == "translator"]
    assert breaker == [(502, Verdict.UPSTREAM_ERROR), (502, Verdict.UPSTREAM_ERROR), (503, Verdict.BREAKER_OPEN)]


def test_the_harness_knows_no_scenario() -> None:
    """harness ← scenarios ← pipeline: the machinery imports none of the scripts, so there is no circle."""
    imports: dict[str, set[str]] = {}
    for path in (REPO / "gateway" / "demo").glob("*.py"):
        tree = ast.parse(path.read_text())
        imports[path.stem] = {
            node.module.rsplit(".", 1)[1]
            for node in ast.walk(tree)
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("gateway.demo.")
        }
    assert imports["agents"] == set()
    assert imports["harness"] <= {"agents"}
    assert imports["scenarios"] <= {"agents", "harness"}
    assert "pipeline" not in set().union(*imports.values())
