// Contracts and policies: list, versions, a diff between two versions, activate or roll back, and (for contracts)
// a dry-run validation of a payload through the endpoint the data plane's validators answer.

import { api } from "./api.js";
import { diffView } from "./diff.js";
import { clock, h, show, table } from "./dom.js";
import { payloadView, violationList } from "./payload.js";

function parseJson(text) {
  try {
    return { value: JSON.parse(text) };
  } catch (error) {
    return { error: `not JSON: ${error.message}` };
  }
}

async function listing(collection) {
  const document = await api(`/${collection}`);
  const rows = document[collection].map((d) => [
    h("a", { href: `#/${collection}/${encodeURIComponent(d.id)}`, "data-document-id": d.id }, d.id),
    d.active_version === null ? "deleted" : `v${d.active_version}`,
    `v${d.latest_version}`,
  ]);
  return rows.length ? table(["id", "in force", "latest"], rows) : h("p", { class: "muted" }, `no ${collection}`);
}

function versionSelect(versions, chosen, name) {
  return h("select", { name }, versions.map((v) => h("option", { value: v.version, selected: v.version === chosen }, `v${v.version}`)));
}

function diffPanel(versions) {
  const newest = versions[versions.length - 1].version;
  const from = versionSelect(versions, Math.max(1, newest - 1), "from");
  const to = versionSelect(versions, newest, "to");
  const out = h("div", { class: "diff-out" });
  const redraw = () => {
    const doc = (n) => versions.find((v) => v.version === Number(n)).document;
    show(out, diffView(doc(from.value), doc(to.value)));
  };
  from.addEventListener("change", redraw);
  to.addEventListener("change", redraw);
  redraw();
  return h("section", { class: "diff-panel" }, h("h3", {}, "Compare versions"), h("label", {}, "from ", from), h("label", {}, " to ", to), out);
}

function versionRows(collection, id, versions, reload, ctx) {
  const active = versions.find((v) => v.active)?.version;
  return versions.map((v) => {
    const verb = active !== undefined && v.version < active ? "Roll back to" : "Activate";
    const activate = async () => {
      await api(`/${collection}/${encodeURIComponent(id)}/activate`, { method: "POST", body: { version: v.version } }).catch(ctx.notify);
      await reload();
    };
    const button = v.active ? h("strong", {}, "in force") : h("button", { type: "button", onclick: activate, "data-activate": v.version }, `${verb} v${v.version}`);
    return [`v${v.version}`, clock(v.created_at), v.document.mode || "", button];
  });
}

function tryPayload(id, versions) {
  const editor = h("textarea", { rows: 8, spellcheck: "false", "aria-label": "payload" }, "{}");
  const direction = h("select", { name: "direction" }, h("option", { value: "request" }, "request"), h("option", { value: "response" }, "response"));
  const status = h("input", { type: "number", value: 200, min: 100, max: 599, "aria-label": "status" });
  const version = versionSelect(versions, versions.find((v) => v.active)?.version, "version");
  const out = h("div", { class: "validate-out" });
  const run = async () => {
    const parsed = parseJson(editor.value);
    if (parsed.error) return show(out, h("p", { class: "error" }, parsed.error));
    const body = { direction: direction.value, payload: parsed.value, status: Number(status.value), version: Number(version.value) };
    try {
      const result = await api(`/contracts/${encodeURIComponent(id)}/validate`, { method: "POST", body });
      const verdict = !result.checked ? "no schema covers this status: unchecked" : result.valid ? "valid" : `${result.violation_count} violation(s)`;
      show(out, h("p", { class: result.valid ? "ok" : "error", "data-valid": String(result.valid) }, verdict), violationList(result.violations), payloadView(parsed.value, result.violations));
    } catch (error) {
      show(out, h("p", { class: "error" }, error.message));
    }
  };
  return h(
    "section",
    { class: "try" },
    h("h3", {}, "Try a payload (dry run, nothing is forwarded)"),
    editor,
    h("div", {}, h("label", {}, "direction ", direction), h("label", {}, " status ", status), h("label", {}, " version ", version), " ", h("button", { type: "button", onclick: run }, "Validate")),
    out,
  );
}

async function detail(collection, id, container, ctx) {
  const reload = () => detail(collection, id, container, ctx);
  const { versions } = await api(`/${collection}/${encodeURIComponent(id)}/versions`);
  const active = versions.find((v) => v.active);
  show(
    container,
    h("h2", {}, id),
    table(["version", "registered", "mode", ""], versionRows(collection, id, versions, reload, ctx)),
    h("h3", {}, active ? `Document in force (v${active.version})` : "Not in force"),
    h("pre", { class: "json" }, JSON.stringify((active || versions[versions.length - 1]).document, null, 2)),
    versions.length > 1 ? diffPanel(versions) : null,
    collection === "contracts" ? tryPayload(id, versions) : null,
  );
}

/** `#/contracts[/<id>]` and `#/policies[/<id>]`. */
export function view(collection) {
  return async (container, params, ctx) => {
    const side = h("div", { class: "doc-list" }, h("h2", {}, collection[0].toUpperCase() + collection.slice(1)), await listing(collection));
    const main = h("div", { class: "doc-detail" }, h("p", { class: "muted" }, "Choose one."));
    show(container, h("div", { class: "documents" }, side, main));
    if (params[0]) await detail(collection, params[0], main, ctx);
  };
}
