// A JSON payload drawn as text in which every value knows its JSON pointer, so the values a contract violation
// points at can be highlighted in place.

import { h } from "./dom.js";

function escapeToken(key) {
  return String(key).replaceAll("~", "~0").replaceAll("/", "~1");
}

function scalarClass(value) {
  if (value === null) return "j-null";
  return `j-${typeof value}`;
}

function render(value, pointer, indent, marked) {
  const node = h("span", { class: "j", "data-pointer": pointer });
  const messages = marked.get(pointer);
  if (messages) {
    node.classList.add("hit");
    node.setAttribute("title", messages.join("\n"));
  }
  const inner = indent + "  ";
  if (Array.isArray(value) && value.length) {
    node.append("[\n");
    value.forEach((item, i) => {
      node.append(inner, render(item, `${pointer}/${i}`, inner, marked), i < value.length - 1 ? ",\n" : "\n");
    });
    node.append(indent + "]");
  } else if (value && typeof value === "object" && !Array.isArray(value) && Object.keys(value).length) {
    const keys = Object.keys(value);
    node.append("{\n");
    keys.forEach((key, i) => {
      node.append(inner, h("span", { class: "j-key" }, JSON.stringify(key)), ": ");
      node.append(render(value[key], `${pointer}/${escapeToken(key)}`, inner, marked));
      node.append(i < keys.length - 1 ? ",\n" : "\n");
    });
    node.append(indent + "}");
  } else {
    node.classList.add(Array.isArray(value) || typeof value === "object" ? "j-empty" : scalarClass(value));
    node.append(JSON.stringify(value));
  }
  return node;
}

/** Violations grouped by pointer: `Map(pointer -> ["keyword: message", ...])`. */
export function byPointer(violations) {
  const marked = new Map();
  for (const v of violations || []) {
    const list = marked.get(v.pointer) || [];
    list.push(`${v.keyword}: ${v.message}`);
    marked.set(v.pointer, list);
  }
  return marked;
}

/** The payload as a <pre>, values at the pointers of `violations` highlighted; `undefined` means "not kept". */
export function payloadView(payload, violations = []) {
  if (payload === undefined || payload === null) {
    return h("p", { class: "muted" }, "not kept (audit.payloads is off, or there was no body)");
  }
  return h("pre", { class: "json" }, render(payload, "", "", byPointer(violations)));
}

/** The violations as a list, each pointer in code. */
export function violationList(violations) {
  if (!violations || !violations.length) return h("p", { class: "muted" }, "no violations");
  return h(
    "ul",
    { class: "violations" },
    violations.map((v) =>
      h("li", { "data-pointer": v.pointer }, h("code", {}, v.pointer || "/"), ` ${v.keyword}: ${v.message}`),
    ),
  );
}
