// Health: circuit breakers with their commands, the dead-letter queue with resolve / replay / discard, and the
// failure breakdown by MAST category over a chosen window.

import { api } from "./api.js";
import { clock, h, show, slug, table } from "./dom.js";
import { payloadView, violationList } from "./payload.js";

const COMMANDS = ["force-open", "force-close", "reset"];
const WINDOWS = [["3600", "last hour"], ["86400", "last day"], ["604800", "last week"]];
const state = { dlq: null, item: null, ctx: null };

async function breakers(container, ctx) {
  const { breakers: list } = await api("/breakers");
  const command = (name, verb) => async () => {
    await api(`/breakers/${encodeURIComponent(name)}/${verb}`, { method: "POST" }).catch(ctx.notify);
    await breakers(container, ctx);
  };
  const rows = list.map((b) => [
    b.name,
    h("span", { class: `breaker ${slug(b.state)}`, "data-breaker": b.name }, b.state),
    `${(b.failure_rate * 100).toFixed(0)}% of ${b.calls_in_window}`,
    String(b.consecutive_failures),
    COMMANDS.map((verb) => h("button", { type: "button", onclick: command(b.name, verb) }, verb)),
  ]);
  show(container, h("h2", {}, "Circuit breakers"), rows.length ? table(["breaker", "state", "failures", "in a row", ""], rows) : h("p", { class: "muted" }, "no breakers yet"));
}

function answerText(item) {
  const answer = item.upstream;
  if (answer && "json" in answer) return JSON.stringify(answer.json, null, 2);
  return "{}";
}

/** Check the corrected answer against the contract version of the handoff, as the resolve endpoint will. */
async function check(item, payload, status) {
  if (!item.contract) return { valid: true, violations: [] };
  const body = { direction: "response", payload, status, version: item.contract_version };
  return api(`/contracts/${encodeURIComponent(item.contract)}/validate`, { method: "POST", body });
}

function resolveForm(item, out) {
  const editor = h("textarea", { rows: 10, spellcheck: "false", "aria-label": "corrected answer", class: "answer" }, answerText(item));
  const status = h("input", { type: "number", value: 200, min: 200, max: 599, "aria-label": "status" });
  const note = h("input", { type: "text", placeholder: "note (optional)", "aria-label": "note" });
  const resolve = async () => {
    let payload;
    try {
      payload = JSON.parse(editor.value);
    } catch (error) {
      return show(out, h("p", { class: "error" }, `not JSON: ${error.message}`));
    }
    const verdict = await check(item, payload, Number(status.value));
    if (!verdict.valid) return show(out, h("p", { class: "error" }, "The answer still breaks the contract; nothing was sent."), violationList(verdict.violations));
    const body = { status: Number(status.value), body: payload, note: note.value || null };
    await act(item, "resolve", body, out);
  };
  return h("div", { class: "resolve" }, h("h4", {}, "Resolve with a corrected answer"), editor, h("div", {}, status, " ", note, " ", h("button", { type: "button", class: "do-resolve", onclick: resolve }, "Resolve")));
}

async function act(item, verb, body, out) {
  try {
    const closed = await api(`/dlq/${encodeURIComponent(item.id)}/${verb}`, { method: "POST", body });
    state.item = closed.id;
    await dlq();
  } catch (error) {
    show(out, h("p", { class: "error" }, error.message), violationList(error.problem?.errors));
  }
}

function itemDetail(item) {
  const out = h("div", { class: "outcome" });
  const pending = item.status === "pending";
  const answer = item.upstream && "json" in item.upstream ? item.upstream.json : undefined;
  return h(
    "section",
    { class: "dlq-item", "data-item-id": item.id, "data-status": item.status },
    h("h3", {}, `${item.id}: `, h("span", { class: `status ${slug(item.status)}` }, item.status)),
    h("p", {}, `${item.reason} on ${item.method} ${item.path} (route ${item.route}, run `, h("a", { href: `#/runs/${encodeURIComponent(item.run_id)}` }, item.run_id), `), ${item.attempts} attempt(s), contract ${item.contract ?? "none"} v${item.contract_version ?? "—"}`),
    h("h4", {}, "Violations"),
    violationList(item.violations),
    h("h4", {}, `The agent's answer${item.upstream_status ? ` (HTTP ${item.upstream_status})` : ""}`),
    payloadView(answer, item.violations),
    pending ? resolveForm(item, out) : h("div", { class: "resolution" }, h("h4", {}, `Outcome: ${item.status}${item.resolved_at ? ` at ${clock(item.resolved_at)}` : ""}`), payloadView(item.resolution?.json ?? item.resolution, [])),
    pending ? h("div", {}, h("button", { type: "button", onclick: () => act(item, "replay", undefined, out) }, "Replay"), " ", h("button", { type: "button", onclick: () => act(item, "discard", {}, out) }, "Discard")) : null,
    out,
  );
}

async function dlq() {
  if (!state.dlq?.isConnected) return;
  const { escalations } = await api("/dlq?limit=50");
  const open = (id) => () => {
    state.item = id;
    dlq().catch(state.ctx.notify);
  };
  const rows = escalations.map((e) => [
    h("button", { type: "button", class: "link", onclick: open(e.id), "data-item-id": e.id }, e.id),
    h("span", { class: `status ${slug(e.status)}`, "data-item-status": e.id }, e.status),
    e.route,
    e.reason,
    clock(e.created_at),
  ]);
  const chosen = escalations.find((e) => e.id === state.item);
  show(
    state.dlq,
    h("h2", {}, "Dead-letter queue"),
    rows.length ? table(["item", "status", "route", "reason", "created"], rows) : h("p", { class: "muted" }, "nothing escalated"),
    chosen ? itemDetail(chosen) : null,
  );
}

async function failures(container, window) {
  const stats = await api(`/stats/failures?window=${encodeURIComponent(window)}`);
  const select = h("select", { "aria-label": "window" }, WINDOWS.map(([value, text]) => h("option", { value, selected: value === window }, text)));
  select.addEventListener("change", () => failures(container, select.value));
  const largest = Math.max(1, ...Object.values(stats.by_category));
  const bars = Object.entries(stats.by_category).map(([category, count]) =>
    h("div", { class: "bar-row" }, h("span", { class: "bar-label" }, category), h("meter", { min: 0, max: largest, value: count, "data-category": category }), ` ${count}`),
  );
  const rows = stats.failures.map((f) => [f.route, f.category, f.mode, String(f.count)]);
  show(container, h("h2", {}, "Failures by MAST category ", select), h("p", {}, `${stats.total} failure(s)`), bars, rows.length ? table(["route", "category", "mode", "count"], rows) : null);
}

/** `#/health[/<dlq item id>]`. */
export async function render(view, params, ctx) {
  const breakerBox = h("section", { class: "breakers" });
  state.dlq = h("section", { class: "dlq" });
  state.ctx = ctx;
  state.item = params[0] ?? state.item;
  const failureBox = h("section", { class: "failures" });
  show(view, h("div", { class: "health" }, breakerBox, state.dlq, failureBox));
  await Promise.all([breakers(breakerBox, ctx), dlq(), failures(failureBox, WINDOWS[0][0])]);
}

/** Live feed: a DLQ change redraws the queue (and the open item) when the page shows it. */
export async function onEvent(name) {
  if (name === "dlq") await dlq();
}
