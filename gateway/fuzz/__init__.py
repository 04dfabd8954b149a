"""Fuzzing an agent against its contract before production: ``agent-gateway contracts fuzz ID --against URL``
and ``POST /contracts/{id}/fuzz``.

:mod:`~gateway.fuzz.generate` derives requests from the request schema, :mod:`~gateway.fuzz.subject` judges the
answers with the gateway's own validators, :mod:`~gateway.fuzz.run` searches and shrinks, and
:mod:`~gateway.fuzz.report` renders the findings as text, JSON or JUnit XML.

Only :mod:`~gateway.fuzz.report` and :mod:`~gateway.fuzz.subject` load without the fuzzing extras (hypothesis,
hypothesis-jsonschema): the gateway and the rest of the CLI import nothing here that needs them, so they run
without them, and ``contracts fuzz`` says what to install when they are missing.
"""
