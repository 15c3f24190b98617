// The dashboard: sign-in, tabs, and the wiring between the views.

import { api, ApiError, exchange, forgetSession, onSessionExpired, SessionExpired, sessionToken } from "./api.js";
import { ApprovalsView } from "./approvals.js";
import { LogPane } from "./logview.js";
import { ProcessTable } from "./processes.js";
import { SystemView } from "./system.js";
import { TicketsView } from "./tickets.js";
import { $, age, confirmAction, el, isActive, localTime, setText, shortArgv } from "./util.js";

const TABS = ["processes", "approvals", "tickets", "system"];

let signedIn = false;
let current = "processes";
let detailId = null;

const conn = $("conn");
const logPane = new LogPane({ onRecord: (record) => table.upsert(record) });
const table = new ProcessTable({
  onSelect: (record, { update }) => showDetail(record, update),
  onAction: (action, id) => stopProcess(action, id),
  onChange: (record) => tickets.updateRecord(record),
  onConnection: (state) => {
    setText(conn, signedIn ? `process stream: ${state}` : "");
    conn.dataset.state = state === "live" ? "live" : "other";
  },
});
const approvals = new ApprovalsView({
  onCount: (n) => {
    const badge = $("approvals-badge");
    badge.hidden = n === 0;
    setText(badge, n);
    badge.setAttribute("aria-label", `${n} pending`);
  },
});
const tickets = new TicketsView({ processTable: table, onShowProcess: (id) => openProcess(id) });
const system = new SystemView();

// ---- sign-in -------------------------------------------------------------------------------

const SEEN_KEY = "desktop-gateway.signed-in-once";

function showSignedOut(reason) {
  signedIn = false;
  table.stop();
  approvals.stop();
  logPane.close();
  $("tabs").hidden = true;
  for (const name of TABS) $(`view-${name}`).hidden = true;
  setText(conn, "");
  const box = $("signin");
  box.hidden = false;
  // A first visit is not an expired session: say how to sign in, not that something ended.
  const firstVisit = !reason && !sessionStorage.getItem(SEEN_KEY);
  box.dataset.state = firstVisit ? "first-visit" : "expired";
  setText($("signin-title"), firstVisit ? "Sign in to desktop-gateway" : "Session expired: run gateway open");
  setText(
    $("signin-detail"),
    firstVisit
      ? "This page needs a one-time sign-in link from the gateway: a link proves you can run commands as the user who runs it."
      : reason || "This page has no valid session (it ended, or the sign-in link was already used).",
  );
  $("signin-help").hidden = false;
  document.title = "Signed out · desktop-gateway";
  $("signin-title").setAttribute("tabindex", "-1");
  $("signin-title").focus();
}

function showSignedIn() {
  signedIn = true;
  sessionStorage.setItem(SEEN_KEY, "1");
  $("signin").hidden = true;
  $("signin").dataset.state = "signed-in";
  $("tabs").hidden = false;
  document.title = "desktop-gateway";
  table.start();
  approvals.start();
  selectTab(sessionStorage.getItem("desktop-gateway.tab") || "processes", { focus: false });
}

onSessionExpired(() => {
  if (signedIn || !$("signin").hidden) showSignedOut();
});

async function signIn() {
  const params = new URLSearchParams(location.hash.slice(1));
  const challenge = params.get("challenge");
  if (challenge !== null) {
    if (signedIn) {
      table.stop();
      approvals.stop();
    }
    setText($("signin-title"), "Signing in…");
    // Drop the fragment at once: the challenge is single-use and must not linger in history.
    history.replaceState(null, "", location.pathname + location.search);
    forgetSession();
    if (!(await exchange(challenge))) {
      showSignedOut("That sign-in link was already used, has expired (links last 60 seconds), or is not from this gateway.");
      return;
    }
  }
  if (!sessionToken()) {
    showSignedOut();
    return;
  }
  // Prove the token still works (a reload after the gateway restarted, or after 10 idle minutes).
  try {
    await api("/api/gateway/version");
  } catch (err) {
    if (err instanceof SessionExpired) return;
  }
  if (sessionToken()) showSignedIn();
}

// ---- tabs ----------------------------------------------------------------------------------

function selectTab(name, { focus = true } = {}) {
  if (!TABS.includes(name)) name = "processes";
  current = name;
  sessionStorage.setItem("desktop-gateway.tab", name);
  for (const tab of TABS) {
    const button = $(`tab-${tab}`);
    const on = tab === name;
    button.setAttribute("aria-selected", String(on));
    button.tabIndex = on ? 0 : -1;
    $(`view-${tab}`).hidden = !on;
  }
  if (focus) $(`tab-${name}`).focus();
  if (name === "tickets") tickets.refresh();
  if (name === "system") system.refresh();
  if (name === "approvals") approvals.refresh().catch(() => {});
}

for (const name of TABS) $(`tab-${name}`).addEventListener("click", () => selectTab(name));
$("tabs").addEventListener("keydown", (event) => {
  const index = TABS.indexOf(current);
  const moves = { ArrowRight: index + 1, ArrowLeft: index - 1, Home: 0, End: TABS.length - 1 };
  if (!(event.key in moves)) return;
  event.preventDefault();
  selectTab(TABS[(moves[event.key] + TABS.length) % TABS.length]);
});

// ---- the detail pane: facts, log, kill and teardown ----------------------------------------

function showDetail(record, update) {
  const pane = $("detail");
  if (!update || detailId !== record.id) {
    detailId = record.id;
    pane.hidden = false;
    document.querySelector(".split").classList.add("with-detail");
    $("receipt").hidden = true;
    logPane.open(record.id);
    $("detail-title").focus?.();
  }
  setText($("detail-title"), `${record.id} · ${record.kind}${record.ticketId ? ` · ${record.ticketId}` : ""}`);
  setText($("detail-argv"), shortArgv(record.argv, 1000));
  const facts = $("detail-facts");
  const items = [
    ["State", record.state + (record.tornDown ? " (torn down)" : "")],
    ["PID", record.pid ?? "—"],
    ["Started", localTime(record.startedAt)],
    ["Age", age(record)],
    ["Restarts", record.restarts ?? 0],
    ["Exit", record.exitCode ?? record.signal ?? "—"],
    ["Stop reason", record.stopReason ?? "—"],
    ["cwd", record.cwd ?? "—"],
  ];
  facts.replaceChildren(...items.flatMap(([k, v]) => [el("dt", { text: k }), el("dd", { text: String(v) })]));
  facts.dataset.state = record.state;
  $("detail-kill").disabled = !isActive(record);
  $("detail-teardown").disabled = Boolean(record.tornDown);
}

function openProcess(id) {
  selectTab("processes", { focus: false });
  const record = table.get(id);
  if (record) table.select(id);
}

$("detail-close").addEventListener("click", () => {
  logPane.close();
  detailId = null;
  table.selected = null;
  $("detail").hidden = true;
  document.querySelector(".split").classList.remove("with-detail");
});
$("detail-kill").addEventListener("click", () => detailId && stopProcess("kill", detailId));
$("detail-teardown").addEventListener("click", () => detailId && stopProcess("teardown", detailId));
$("detail-title").setAttribute("tabindex", "-1");

async function stopProcess(action, id) {
  const record = table.get(id);
  const what = record ? `${id} (${shortArgv(record.argv, 80)})` : id;
  const ok = await confirmAction(
    action === "kill"
      ? { title: `Kill ${id}?`, text: `Stop ${what} and every process it started: SIGTERM to the whole tree, SIGKILL after the grace period.`, ok: "Kill" }
      : { title: `Tear down ${id}?`, text: `Kill ${what} and its whole tree, then run its teardown (release ports, remove transient files). Logs are kept.`, ok: "Tear down" },
  );
  if (!ok) return;
  if (detailId !== id) table.select(id);
  const receipt = $("receipt");
  const body = $("receipt-body");
  receipt.hidden = false;
  receipt.dataset.state = "pending";
  setText($("receipt-title"), action === "kill" ? `Killing ${id}…` : `Tearing down ${id}…`);
  body.replaceChildren(el("p", { class: "muted", text: "Waiting until the whole tree is gone (if the policy holds this request, approve it under Approvals)." }));
  try {
    const result = await api(`/api/gateway/processes/${encodeURIComponent(id)}/${action}`, { method: "POST" });
    if (result?.process) table.upsert(result.process);
    renderReceipt(action, id, result);
  } catch (err) {
    if (err instanceof SessionExpired) return;
    receipt.dataset.state = "error";
    setText($("receipt-title"), `${action === "kill" ? "Kill" : "Teardown"} of ${id} failed`);
    body.replaceChildren(el("p", { class: "error", role: "alert", text: err instanceof ApiError ? `${err.status} ${err.code}: ${err.message}` : String(err) }));
  }
  receipt.focus();
}

function renderReceipt(action, id, r) {
  const receipt = $("receipt");
  receipt.dataset.state = "done";
  setText($("receipt-title"), `${action === "kill" ? "Kill" : "Teardown"} receipt for ${id}`);
  const p = r.process || {};
  const signals = (r.signals || []).map((s) => el("li", {}, el("code", { text: s.signal }), ` at ${localTime(s.at)}`, s.pids?.length ? ` to pid ${s.pids.join(", ")}` : ""));
  const survivors = r.survivors || [];
  const parts = [
    el(
      "dl",
      { class: "facts" },
      el("dt", { text: "Final state" }), el("dd", { class: "final-state", text: `${p.state ?? "?"}${p.tornDown ? " (torn down)" : ""}` }),
      el("dt", { text: "Stop reason" }), el("dd", { text: p.stopReason ?? "—" }),
      el("dt", { text: "Elapsed" }), el("dd", { text: `${r.elapsedMs ?? "?"} ms` }),
      el("dt", { text: "Survivors" }), el("dd", { class: survivors.length ? "error" : "", text: survivors.length ? survivors.join(", ") : "none: the whole tree is gone" }),
    ),
    r.alreadyEnded ? el("p", { class: "muted", text: "The process had already ended; nothing needed a signal." }) : null,
    signals.length ? el("ol", { class: "signals", "aria-label": "Signals sent" }, ...signals) : null,
    el("details", {}, el("summary", { text: "Raw receipt" }), el("pre", { class: "raw", text: JSON.stringify(r, null, 2) })),
  ];
  $("receipt-body").replaceChildren(...parts.filter(Boolean));
}

// A fresh `gateway open` link pasted into this tab changes only the fragment: sign in again
// without a reload.
window.addEventListener("hashchange", () => {
  if (new URLSearchParams(location.hash.slice(1)).has("challenge")) signIn();
});

// The table and approvals arrive over streams, which use the session once, when they open. A
// small call every few seconds keeps an open tab's session alive (it ends after 10 idle
// minutes) and notices at once when it ended (gateway restart, pushed out by newer sessions).
const SESSION_CHECK_MS = 5000;
setInterval(() => {
  if (signedIn) api("/api/gateway/version").catch(() => {});
}, SESSION_CHECK_MS);

// Ages of running processes grow while you watch (the table ticks its own rows).
setInterval(() => {
  const record = detailId && table.get(detailId);
  if (record && isActive(record)) showDetail(record, true);
}, 1000);

signIn();
