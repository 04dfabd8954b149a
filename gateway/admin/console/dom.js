// Building the page from data without ever parsing data as HTML: elements are created one by one, attributes set
// with setAttribute and text added as text nodes. Payloads are attacker-controlled: no markup is ever parsed.

const SVG_NS = "http://www.w3.org/2000/svg";

function fill(el, attrs, children) {
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (name.startsWith("on")) el.addEventListener(name.slice(2), value);
    else el.setAttribute(name, value === true ? "" : String(value));
  }
  append(el, children);
  return el;
}

/** An HTML element: `h("a", {href: "#/runs"}, "Runs")`. */
export function h(tag, attrs, ...children) {
  return fill(document.createElement(tag), attrs, children);
}

/** An SVG element, same calling convention as `h`. */
export function svg(tag, attrs, ...children) {
  return fill(document.createElementNS(SVG_NS, tag), attrs, children);
}

/** Append children: nodes as they are, arrays flattened, anything else as text; null and undefined skipped. */
export function append(el, children) {
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue;
    if (Array.isArray(child)) append(el, child);
    else el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

/** Replace everything inside `el`. */
export function show(el, ...children) {
  el.replaceChildren();
  return append(el, children);
}

/** A CSS class name made from data (a verdict): only letters, digits, `_` and `-` survive. */
export function slug(text) {
  return String(text).replace(/[^A-Za-z0-9_-]/g, "_");
}

/** Seconds since the epoch as local time, to the millisecond unless `coarse`. */
export function clock(seconds, coarse = false) {
  const at = new Date(seconds * 1000);
  const time = at.toLocaleTimeString([], { hour12: false });
  return coarse ? time : time + "." + String(at.getMilliseconds()).padStart(3, "0");
}

/** A small table: `columns` are header labels, `rows` arrays of cells (text or nodes), `attrs` per row. */
export function table(columns, rows, rowAttrs = () => ({})) {
  return h(
    "table",
    {},
    h("thead", {}, h("tr", {}, columns.map((c) => h("th", {}, c)))),
    h("tbody", {}, rows.map((cells, i) => h("tr", rowAttrs(i), cells.map((c) => h("td", {}, c))))),
  );
}
