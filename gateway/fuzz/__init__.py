"""Fuzzing an agent against its contract before production: ``agent-gateway contracts fuzz ID --against URL``
and ``POST /contracts/{id}/fuzz``.

:mod:`~gateway.fuzz.generate` derives requests from the request schema, :mod:`~gateway.fuzz.subject` judges the
answers with the gateway's own validators, :mod:`~gateway.fuzz.run` searches and shrinks, and
:mod:`~gateway.fuzz.report` renders the findings as text, JSON or JUnit XML.
"""

from gateway.fuzz.report import FuzzCase, FuzzReport, junit_xml, render_text
from gateway.fuzz.run import FuzzOptions, TargetUnreachable, run_fuzz

__all__ = ["FuzzCase", "FuzzOptions", "FuzzReport", "TargetUnreachable", "junit_xml", "render_text", "run_fuzz"]
