"""How the command line prints what the admin API answered: an aligned table for a person, or the answer's
JSON for a script (``--json``), with colour only where a person is looking.

Colour follows https://no-color.org: never when ``NO_COLOR`` is set to anything non-empty, and only when stdout is
a terminal, so a pipe, a file or a test capturing the output always gets plain text. Cells are coloured by meaning
(a verdict, a breaker state, an escalation status), never by position, so the same word reads the same everywhere.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, TextIO

from gateway.cli_support import print_json
from gateway.outcomes import Verdict

GREEN, YELLOW, RED, DIM = "32", "33", "31", "2"
MEANING: Mapping[str, str] = {
    Verdict.VALID: GREEN, Verdict.UNCHECKED: YELLOW, **{verdict: RED for verdict in Verdict if verdict not in
                                                        (Verdict.VALID, Verdict.UNCHECKED)},
    "closed": GREEN, "half_open": YELLOW, "open": RED, "forced_open": RED, "forced_closed": YELLOW,
    "pending": YELLOW, "resolved": GREEN, "replayed": GREEN, "discarded": DIM,
}  # fmt: skip
"""The colour of a cell by its text: good green, attention yellow, failure red, settled-and-gone dim."""


def colour_wanted(stream: TextIO | None = None, environ: Mapping[str, str] | None = None) -> bool:
    """True when ``stream`` (stdout) is a terminal and ``NO_COLOR`` is unset or empty."""
    environ = os.environ if environ is None else environ
    stream = sys.stdout if stream is None else stream
    return not environ.get("NO_COLOR") and stream.isatty()


def paint(text: str, width: int, colour: bool) -> str:
    """``text`` padded to ``width``, wrapped in the escape code its meaning calls for when ``colour``; the padding
    stays outside the escape codes so columns line up."""
    padded = text.ljust(width)
    code = MEANING.get(text) if colour else None
    return f"\x1b[{code}m{text}\x1b[0m{padded[len(text) :]}" if code else padded


def table(columns: Sequence[str], rows: Iterable[Sequence[Any]], colour: bool = False) -> str:
    """An aligned table with a header line (bold on a terminal); ``None`` cells print as ``-``."""
    cells = [["-" if value is None else str(value) for value in row] for row in rows]
    widths = [max(len(column), *(len(row[i]) for row in cells)) for i, column in enumerate(columns)]
    header = "  ".join(column.upper().ljust(width) for column, width in zip(columns, widths, strict=True)).rstrip()
    lines = [f"\x1b[1m{header}\x1b[0m" if colour else header]
    lines += ["  ".join(paint(v, w, colour) for v, w in zip(row, widths, strict=True)).rstrip() for row in cells]
    return "\n".join(lines)


def show(args: argparse.Namespace, answer: Any, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    """The admin API's JSON with ``--json``; else a table, or a line saying there is nothing to show."""
    if getattr(args, "json", False):
        print_json(answer)
    elif not rows:
        print("(none)")
    else:
        print(table(columns, rows, colour_wanted()))


def details(pairs: Sequence[tuple[str, Any]], colour: bool = False) -> str:
    """One object as aligned ``name  value`` lines (a record reads better down than across); ``None`` as ``-``."""
    width = max(len(name) for name, _ in pairs)
    return "\n".join(f"{name.ljust(width)}  {paint('-' if value is None else str(value), 0, colour)}"
                     for name, value in pairs)  # fmt: skip


def when(timestamp: float | None) -> str | None:
    """A Unix time as local ISO-8601 to the second (what a person compares with their clock), or ``None``."""
    if timestamp is None:
        return None
    return datetime.fromtimestamp(timestamp, UTC).astimezone().isoformat(timespec="seconds")


def add_json_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print the admin API's JSON instead of a table")
