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
    } else if (j < b.length && (i === a.length || lcs[i * width + j + 1] >= lcs[(i + 1) * width + j])) {
      out.push({ op: "+", line: b[j++] });
    } else {
      out.push({ op: "-", line: a[i++] });
    }
  }
  return out;
}

/** The diff as a <pre>: removed lines marked `-`, added `+`. */
export function diffView(before, after) {
  const diff = lineDiff(before, after);
  if (diff === null) return h("p", { class: "muted" }, "too large to compare here");
  if (diff.every((d) => d.op === " ")) return h("p", { class: "muted" }, "identical");
  const cls = { " ": "same", "-": "del", "+": "ins" };
  return h(
    "pre",
    { class: "diff" },
    diff.map((d) => h("span", { class: cls[d.op] }, `${d.op} ${d.line}\n`)),
  );
}
