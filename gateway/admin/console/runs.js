// Runs: recent runs with their status, and one run as a sequence diagram with the details of a chosen handoff.

import { api } from "./api.js";
import { sequenceDiagram } from "./diagram.js";
import { clock, h, show, slug, table } from "./dom.js";
import { payloadView, violationList } from "./payload.js";

const state = { runId: null, selected: null, timeline: null, list: null, detail: null };

function runRows(runs) {
  return runs.map((run) => [
    h("a", { href: `#/runs/${encodeURIComponent(run.run_id)}`, "data-run-id": run.run_id }, run.run_id),
    h("span", { class: run.failures ? "status failed" : "status ok" }, run.failures ? `${run.failures} failed` : "ok"),
    String(run.handoffs),
    clock(run.last_at, true),
  ]);
}

async function drawList() {
  const { runs } = await api("/runs?limit=50");
  show(state.list, h("h2", {}, "Recent runs"), runs.length ? table(["run", "status", "handoffs", "last"], runRows(runs)) : h("p", { class: "muted" }, "no runs recorded yet"));
}

function traceLink(traceId, settings) {
  if (!settings.trace_url || !/^https?:\/\//.test(settings.trace_url)) return h("code", {}, traceId);
  const href = settings.trace_url.replaceAll("{trace_id}", encodeURIComponent(traceId));
  return h("a", { href, target: "_blank", rel: "noopener noreferrer", class: "trace" }, traceId);
}

function facts(record, settings) {
  const rows = [
    ["handoff", `${record.source} → ${record.target}`],
    ["operation", `${record.method} ${record.path}` + (record.step === `${record.method} ${record.path}` ? "" : ` (step ${record.step})`)],
    ["status · verdict", `${record.status} · ${record.verdict}`],
    ["failure", record.category ? `${record.category}: ${record.failure_mode}` : "—"],
    ["contract", record.contract ? `${record.contract} v${record.contract_version}` : "none"],
    ["attempt", String(record.attempt)],
    ["checkpoint", record.checkpoint || "—"],
    ["started", clock(record.started_at)],
    ["timings", `${record.duration_ms.toFixed(1)} ms total, ` + (record.upstream_ms === null ? "agent not called" : `${record.upstream_ms.toFixed(1)} ms in the agent`)],
    ["sizes", `request ${record.request_bytes ?? "—"} B, response ${record.response_bytes ?? "—"} B`],
    ["trace", traceLink(record.trace_id, settings)],
  ];
  return h("dl", { class: "facts" }, rows.map(([k, v]) => [h("dt", {}, k), h("dd", {}, v)]));
}

function handoffDetail(record, settings) {
  const sided = (direction) => record.violations.filter((v) => (v.direction || (record.verdict === "response_invalid" ? "response" : "request")) === direction);
  return h(
    "section",
    { class: "handoff", "data-handoff-id": record.id },
    h("h3", {}, `${record.source} → ${record.target}: ${record.verdict}`),
    facts(record, settings),
    h("h4", {}, `Violations (${record.violation_count})`),
    violationList(record.violations),
    h("h4", {}, "Request payload"),
    h("div", { class: "payload request" }, payloadView(record.request_payload, sided("request"))),
    h("h4", {}, "Response payload"),
    h("div", { class: "payload response" }, payloadView(record.response_payload, sided("response"))),
  );
}

function entrySummary(timeline) {
  const entry = timeline.entry_point;
  if (!entry) return h("p", { class: "ok" }, "No contract violation entered this run.");
  const index = timeline.handoffs.findIndex((r) => r.id === entry.id) + 1;
  return h(
    "p",
    { class: "entry-summary" },
    `A violation entered at #${index}: ${entry.source} → ${entry.target} (${entry.verdict}; ${entry.category}: ${entry.failure_mode}). `,
    `${timeline.downstream.length} later handoff(s) consumed it.`,
  );
}

function drawRun(ctx) {
  const timeline = state.timeline;
  if (!timeline) return;
  const select = (id) => {
    state.selected = id;
    drawRun(ctx);
  };
  const chosen = timeline.handoffs.find((r) => r.id === state.selected);
  show(
    state.detail,
    h("h2", {}, `Run ${timeline.run_id}`, h("span", { class: `count v-${slug(timeline.entry_point?.verdict || "valid")}` }, ` · ${timeline.handoffs.length} handoff(s)`)),
    entrySummary(timeline),
    h("div", { class: "diagram" }, sequenceDiagram(timeline, state.selected, select)),
    chosen ? handoffDetail(chosen, ctx.settings) : h("p", { class: "muted" }, "Choose an arrow to see its payloads, violations and timings."),
  );
}

/** Read and draw the run; a selection that is not in it gives way to the entry point (if any). */
async function loadRun(runId, ctx) {
  const timeline = await api(`/runs/${encodeURIComponent(runId)}`);
  if (state.runId !== runId) return;
  state.timeline = timeline;
  if (!timeline.handoffs.some((r) => r.id === state.selected)) state.selected = timeline.entry_point?.id ?? null;
  drawRun(ctx);
}

/** `#/runs` and `#/runs/<id>`. */
export async function render(view, params, ctx) {
  state.runId = params[0] ?? null;
  state.list = h("div", { class: "run-list" });
  state.detail = h("div", { class: "run-detail" });
  state.timeline = null;
  show(view, h("div", { class: "runs" }, state.list, state.detail));
  await drawList();
  if (state.runId) {
    await loadRun(state.runId, ctx);
  } else {
    show(state.detail, h("p", { class: "muted" }, "Choose a run."));
  }
}

/** Live feed: a changed run refreshes the list, and the open run's diagram when it is that run. */
export async function onEvent(name, data, ctx) {
  if (name !== "run" || !state.list?.isConnected) return;
  await drawList();
  if (data.run_id === state.runId) await loadRun(state.runId, ctx);
}
