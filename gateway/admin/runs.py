"""Admin endpoints for what happened: runs and their timelines, failure statistics, metrics."""

from __future__ import annotations

import time

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST

from gateway.admin.api import Endpoint, json_response
from gateway.admin.common import MAX_LIMIT, MAX_WINDOW_SECONDS, int_query, not_found, state_of
from gateway.admin.models import FailureBucket, FailureStats, RunList, RunOut, RunTimelineOut
from gateway.observability.audit import timeline
from gateway.store.base import RunSummary


async def list_runs(request: web.Request) -> web.Response:
    state = state_of(request)
    await state.audit.flush()
    limit = int_query(request, "limit", 50, MAX_LIMIT)
    runs = await state.store.list_runs(limit)
    return json_response(RunList(runs=[RunOut(**{n: getattr(r, n) for n in RunSummary.__slots__}) for r in runs]))


async def get_run(request: web.Request) -> web.Response:
    state = state_of(request)
    await state.audit.flush()
    run_id = request.match_info["id"]
    records = await state.store.run_handoffs(run_id)
    if not records:
        raise not_found(f"Run {run_id!r}")
    story = timeline(run_id, records)
    return json_response(
        RunTimelineOut(
            run_id=run_id,
            handoffs=story.handoffs,
            entry_point=story.entry_point,
            downstream=[r.id for r in story.downstream],
        )
    )


async def failure_stats(request: web.Request) -> web.Response:
    state = state_of(request)
    await state.audit.flush()
    window = float(int_query(request, "window", 3600, MAX_WINDOW_SECONDS))
    counts = await state.store.failure_counts(time.time() - window)
    by_category: dict[str, int] = {}
    for c in counts:
        by_category[c.category] = by_category.get(c.category, 0) + c.count
    buckets = [FailureBucket(route=c.route, category=c.category, mode=c.mode, count=c.count) for c in counts]
    stats = FailureStats(
        window_seconds=window, total=sum(by_category.values()), by_category=by_category, failures=buckets
    )
    return json_response(stats)


async def metrics(request: web.Request) -> web.Response:
    body = state_of(request).metrics.exposition()
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


LIMIT = {"limit": {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT, "default": 50}}
WINDOW = {"window": {"type": "integer", "minimum": 1, "maximum": MAX_WINDOW_SECONDS, "default": 3600}}

ENDPOINTS = (
    Endpoint("GET", "/runs", "Recent runs", list_runs, response=RunList, query=LIMIT),
    Endpoint("GET", "/runs/{id}", "A run's timeline and where a violation entered", get_run, response=RunTimelineOut),
    Endpoint("GET", "/stats/failures", "Failures by route and MAST category over a window (seconds)", failure_stats,
             response=FailureStats, query=WINDOW),
    Endpoint("GET", "/metrics", "Prometheus metrics (text exposition format)", metrics,
             media_type="text/plain"),
)  # fmt: skip
