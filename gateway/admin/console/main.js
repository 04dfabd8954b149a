// The console's shell: the login form, the hash router between views, and the live feed.

import { ApiError, api, follow, token } from "./api.js";
import { view as documents } from "./documents.js";
import { clock, h, show } from "./dom.js";
import * as health from "./health.js";
import * as runs from "./runs.js";

const VIEWS = { runs: runs.render, contracts: documents("contracts"), policies: documents("policies"), health: health.render };
const LISTENERS = [runs.onEvent, health.onEvent];
const LIVE_ITEMS = 30;
const RECONNECT_MS = 2000;
const $ = (id) => document.getElementById(id);
const ctx = { settings: {}, notify };
let feed = null;

function notify(error) {
  show($("notice"), error ? error.message || String(error) : "");
  if (error instanceof ApiError && error.status === 401) signOut("The gateway no longer accepts this token.");
}

async function route() {
  const [name, ...params] = location.hash.replace(/^#\/?/, "").split("/").map(decodeURIComponent);
  const render = VIEWS[name] || VIEWS.runs;
  for (const link of document.querySelectorAll("nav a")) link.classList.toggle("current", link.dataset.view === (VIEWS[name] ? name : "runs"));
  notify(null);
  try {
    await render($("view"), params, ctx);
  } catch (error) {
    notify(error);
  }
}

function liveItem(record) {
  return h(
    "li",
    { class: `v-${record.verdict.replace(/[^a-z_]/g, "_")}`, "data-handoff-id": record.id },
    h("a", { href: `#/runs/${encodeURIComponent(record.run_id)}` }, record.run_id),
    ` ${clock(record.started_at)} ${record.source} → ${record.target} ${record.status} ${record.verdict}`,
    record.checkpoint ? ` (checkpoint ${record.checkpoint})` : "",
  );
}

function onEvent(name, data) {
  if (name === "ready") {
    $("live-status").textContent = "● live";
    $("live-status").classList.add("on");
  }
  if (name === "handoff") {
    const list = $("live-list");
    list.prepend(liveItem(data));
    while (list.children.length > LIVE_ITEMS) list.lastChild.remove();
  }
  if (name === "dlq") {
    $("dlq-badge").hidden = data.pending === 0;
    $("dlq-badge").textContent = String(data.pending);
  }
  for (const listener of LISTENERS) listener(name, data, ctx).catch(notify);
}

/** Follow `/events` while signed in; reconnect after a pause when the stream ends or fails. */
async function live(controller) {
  while (!controller.signal.aborted) {
    try {
      await follow(onEvent, controller.signal);
    } catch (error) {
      if (error instanceof ApiError && error.status === 401) return notify(error);
    }
    $("live-status").textContent = "○ reconnecting";
    $("live-status").classList.remove("on");
    await new Promise((resolve) => setTimeout(resolve, RECONNECT_MS));
  }
}

async function signIn() {
  ctx.settings = await api("/console/settings");
  $("login").hidden = true;
  $("app").hidden = false;
  feed = new AbortController();
  live(feed);
  await route();
}

function signOut(message = "") {
  feed?.abort();
  feed = null;
  token.clear();
  $("app").hidden = true;
  $("login").hidden = false;
  $("login-error").textContent = message;
  $("live-status").textContent = "○ offline";
  $("live-status").classList.remove("on");
}

async function submit(event) {
  event.preventDefault();
  token.set($("token").value);
  $("token").value = "";
  try {
    await signIn();
  } catch (error) {
    signOut(error instanceof ApiError && error.status === 401 ? "The gateway refused this token." : error.message);
  }
}

$("login-form").addEventListener("submit", submit);
$("logout").addEventListener("click", () => signOut());
window.addEventListener("hashchange", route);
if (token.get()) signIn().catch(() => signOut());
