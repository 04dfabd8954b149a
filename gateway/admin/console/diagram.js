// A run's handoffs as a sequence diagram: agents as lanes, one arrow per attempt, coloured by verdict; the entry
// point of a failure and the handoffs that consumed it are marked, retries and checkpoint hits labelled.

import { slug, svg } from "./dom.js";

const LANE = 150;
const ROW = 46;
const TOP = 56;
const MARGIN = 110;

/** Agents in the order they first appear, so the caller of the first handoff is the leftmost lane. */
function lanes(handoffs) {
  const order = [];
  for (const record of handoffs) {
    for (const agent of [record.source, record.target]) if (!order.includes(agent)) order.push(agent);
  }
  return order;
}

function label(record, index) {
  const flags = [];
  if (record.attempt > 1) flags.push(`attempt ${record.attempt}`);
  if (record.checkpoint) flags.push(`checkpoint ${record.checkpoint}`);
  const tail = flags.length ? ` · ${flags.join(" · ")}` : "";
  return `#${index + 1} ${record.step} · ${record.verdict} ${record.status}${tail}`;
}

function arrowHead(x, y, pointsRight) {
  const back = pointsRight ? x - 9 : x + 9;
  return svg("polygon", { class: "head", points: `${x},${y} ${back},${y - 5} ${back},${y + 5}` });
}

function arrow(record, index, x1, x2, role, onSelect) {
  const y = TOP + 34 + index * ROW;
  const classes = ["arrow", `v-${slug(record.verdict)}`, role].filter(Boolean).join(" ");
  const group = svg("g", {
    class: classes,
    "data-handoff-id": record.id,
    "data-verdict": record.verdict,
    tabindex: 0,
    role: "button",
    onclick: () => onSelect(record.id),
    onkeydown: (event) => event.key === "Enter" && onSelect(record.id),
  });
  const width = LANE * 0.5;
  const self = x1 === x2;
  group.append(svg("rect", { class: "hitbox", x: 0, y: y - ROW / 2 - 4, width: "100%", height: ROW }));
  if (self) {
    group.append(svg("path", { class: "line", d: `M${x1},${y - 8} h${width} v16 h${-width}` }), arrowHead(x1, y + 8, false));
  } else {
    group.append(svg("line", { class: "line", x1, y1: y, x2, y2: y }), arrowHead(x2, y, x2 > x1));
  }
  const mid = self ? x1 + width + 6 : (x1 + x2) / 2;
  group.append(svg("text", { class: "label", x: mid, y: y - 8, "text-anchor": self ? "start" : "middle" }, label(record, index)));
  if (role === "entry") group.append(svg("text", { class: "mark", x: 6, y: y + 4 }, "▶ entry point"));
  if (role === "downstream") group.append(svg("text", { class: "mark", x: 6, y: y + 4 }, "↳ consumed it"));
  return group;
}

/** The diagram of a timeline (`GET /runs/{id}`); `onSelect(handoffId)` is called when an arrow is chosen. */
export function sequenceDiagram(timeline, selected, onSelect) {
  const agents = lanes(timeline.handoffs);
  const x = (agent) => MARGIN + LANE / 2 + agents.indexOf(agent) * LANE;
  const height = TOP + 34 + timeline.handoffs.length * ROW;
  const width = MARGIN + agents.length * LANE + LANE / 2;
  const root = svg("svg", { class: "sequence", width, height, viewBox: `0 0 ${width} ${height}`, role: "img" });
  for (const agent of agents) {
    root.append(
      svg("text", { class: "lane-name", x: x(agent), y: 24, "text-anchor": "middle" }, agent),
      svg("line", { class: "lane", x1: x(agent), y1: 34, x2: x(agent), y2: height }),
    );
  }
  const entry = timeline.entry_point?.id;
  const downstream = new Set(timeline.downstream || []);
  timeline.handoffs.forEach((record, index) => {
    const role = record.id === entry ? "entry" : downstream.has(record.id) ? "downstream" : "";
    const group = arrow(record, index, x(record.source), x(record.target), role, onSelect);
    if (record.id === selected) group.classList.add("selected");
    root.append(group);
  });
  return root;
}
