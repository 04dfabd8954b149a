// A line diff of two documents (longest common subsequence), for comparing contract and policy versions.

import { h } from "./dom.js";

const MAX_CELLS = 4_000_000; // beyond this the table would cost more memory than the page should spend

function lines(document) {
  return JSON.stringify(document, null, 2).split("\n");
}

/** `[{op: " " | "-" | "+", line}]` turning `before` into `after`; null when the documents are too large. */
export function lineDiff(before, after) {
  const a = lines(before);
  const b = lines(after);
  if (a.length * b.length > MAX_CELLS) return null;
  const width = b.length + 1;
  const lcs = new Uint32Array((a.length + 1) * width);
  for (let i = a.length - 1; i >= 0; i--) {
    for (let j = b.length - 1; j >= 0; j--) {
      lcs[i * width + j] =
        a[i] === b[j] ? lcs[(i + 1) * width + j + 1] + 1 : Math.max(lcs[(i + 1) * width + j], lcs[i * width + j + 1]);
    }
  }
  const out = [];
  let i = 0;
  let j = 0;
  while (i < a.length || j < b.length) {
    if (i < a.length && j < b.length && a[i] === b[j]) {
      out.push({ op: " ", line: a[i++] });
      j++;
    } else if (i < a.length && (j === b.length || lcs[(i + 1) * width + j] >= lcs[i * width + j + 1])) {
      out.push({ op: "-", line: a[i++] });
    } else {
      out.push({ op: "+", line: b[j++] });
    }
  }
  return out;
}

const CONTEXT = 3; // unchanged lines shown around each change

/** The lines worth showing: every change and CONTEXT lines either side; a gap becomes one `…` line. */
function hunks(diff) {
  const keep = diff.map(() => false);
  diff.forEach((d, i) => {
    if (d.op === " ") return;
    for (let j = Math.max(0, i - CONTEXT); j <= Math.min(diff.length - 1, i + CONTEXT); j++) keep[j] = true;
  });
  return diff.flatMap((d, i) => (keep[i] ? [d] : i === 0 || keep[i - 1] ? [{ op: "…", line: "" }] : []));
}

/** The diff as a <pre>: removed lines marked `-`, added `+`, unchanged stretches elided. */
export function diffView(before, after) {
  const diff = lineDiff(before, after);
  if (diff === null) return h("p", { class: "muted" }, "too large to compare here");
  if (diff.every((d) => d.op === " ")) return h("p", { class: "muted" }, "identical");
  const cls = { " ": "same", "-": "del", "+": "ins", "…": "gap" };
  return h(
    "pre",
    { class: "diff" },
    hunks(diff).map((d) => h("span", { class: cls[d.op] }, `${d.op} ${d.line}\n`)),
  );
}
