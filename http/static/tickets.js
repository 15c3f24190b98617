// Tickets: each ticket's runs, loop iterations and judge verdicts.
//
// Sources: GET /api/gateway/symphony/status (every ticket's runs, as process records) merged
// with the process table's records that carry a ticket id, so tickets show even where the
// Symphony family answers nothing yet. Verdicts load when a ticket is opened, from
// GET /api/gateway/symphony/judges/:ticketId. Shapes are read tolerantly (see docs/dashboard.md).

import { api, ApiError, SessionExpired } from "./api.js";
import { $, age, el, localTime, shortArgv } from "./util.js";

function asRuns(value) {
  if (Array.isArray(value)) return value.filter((r) => r && typeof r === "object");
  if (value && typeof value === "object") {
    for (const key of ["runs", "processes", "records", "history"]) if (Array.isArray(value[key])) return asRuns(value[key]);
    if (value.id && value.state) return [value];
    const single = value.run || value.active || value.process;
    if (single && typeof single === "object") return [single];
  }
  return [];
}

/** Map ticketId -> {runs, info} from whatever the status route answers. */
export function normalizeStatus(data) {
  const tickets = new Map();
  const add = (ticketId, runs, info) => {
    if (!ticketId) return;
    const entry = tickets.get(ticketId) || { runs: [], info: {} };
    entry.runs.push(...runs);
    Object.assign(entry.info, info || {});
    tickets.set(ticketId, entry);
  };
  const fromItem = (item, key) => {
    if (!item || typeof item !== "object") return;
    if (item.id && item.state && (item.ticketId || key)) return add(item.ticketId || key, [item]);
    const id = item.ticketId || item.ticket || item.id || key;
    const { runs: _r, processes: _p, records: _c, ...info } = item;
    add(id, asRuns(item), info);
  };
  if (Array.isArray(data)) data.forEach((item) => fromItem(item));
  else if (data && typeof data === "object") {
    const list = data.tickets ?? data.items ?? data.runs ?? data.processes;
    if (Array.isArray(list)) list.forEach((item) => fromItem(item));
    else if (list && typeof list === "object") Object.entries(list).forEach(([k, v]) => (Array.isArray(v) ? add(k, asRuns(v)) : fromItem(v, k)));
    else Object.entries(data).forEach(([k, v]) => (Array.isArray(v) ? add(k, asRuns(v)) : v && typeof v === "object" && fromItem(v, k)));
    // {"runs": [records], "tickets": [{ticketId, active, runs: <count>}]}: records carry the ticket.
    if (Array.isArray(list) && Array.isArray(data.runs)) {
      for (const run of data.runs) if (run && run.id && run.ticketId) add(run.ticketId, [run]);
    }
  }
  for (const entry of tickets.values()) {
    const seen = new Set();
    entry.runs = entry.runs.filter((r) => !seen.has(r.id) && seen.add(r.id));
  }
  return tickets;
}

/** Flatten a judges answer to rows {iteration, name, passed, detail}. */
export function normalizeVerdicts(data) {
  const rows = [];
  const verdictRow = (v, iteration) => {
    const passed = v.passed ?? v.pass ?? (typeof v.verdict === "string" ? /^pass/i.test(v.verdict) : v.verdict) ?? (v.exitCode === 0 ? true : v.exitCode != null ? false : null);
    rows.push({
      iteration: v.iteration ?? iteration ?? "",
      name: v.name || v.judge || "judge",
      passed,
      detail: v.justification || v.feedback || v.reason || v.summary || v.output || v.message || "",
      score: v.score != null ? (v.threshold != null ? `${v.score} / ${v.threshold}` : String(v.score)) : "",
      processId: v.processId || null,
    });
  };
  const iterations = Array.isArray(data) ? data : data?.iterations || data?.verdicts || data?.judges || [];
  for (const [index, it] of iterations.entries()) {
    if (!it || typeof it !== "object") continue;
    const inner = it.verdicts || it.judges || it.results;
    if (Array.isArray(inner)) inner.forEach((v) => verdictRow(v, it.iteration ?? index + 1));
    else verdictRow(it, it.iteration);
  }
  return rows;
}

function result(r) {
  return [r.stopReason, r.exitCode != null ? `exit ${r.exitCode}` : ""].filter(Boolean).join(" · ");
}

export class TicketsView {
  constructor({ processTable, onShowProcess }) {
    this.processTable = processTable;
    this.onShowProcess = onShowProcess;
    this.list = $("tickets-list");
    this.open = new Set();
    $("tickets-refresh").addEventListener("click", () => this.refresh());
  }

  /** Keep shown runs current from the live process stream (in place: focus stays put). */
  updateRecord(r) {
    const row = this.list.querySelector(`tr[data-run="${CSS.escape(r.id)}"]`);
    if (!row) {
      // A new run of some ticket while this view is on screen: reload (at most twice a second).
      if (r.ticketId && !$("view-tickets").hidden && !this.reload) {
        this.reload = setTimeout(() => {
          this.reload = 0;
          this.refresh();
        }, 500);
      }
      return;
    }
    const badge = row.querySelector(".state");
    badge.className = `state state-${r.state}`;
    badge.textContent = r.state;
    row.querySelector(".run-age").textContent = age(r);
    row.querySelector(".run-result").textContent = result(r);
  }

  async refresh() {
    let tickets = new Map();
    let note = "";
    try {
      tickets = normalizeStatus(await api("/api/gateway/symphony/status"));
    } catch (err) {
      if (err instanceof SessionExpired) return;
      note = err instanceof ApiError && [404, 501].includes(err.status)
        ? "The Symphony routes are not available on this gateway; showing tickets from the process table."
        : `Could not read Symphony status (${err.message}); showing tickets from the process table.`;
    }
    // Merge in the process table's ticketed records (runs not yet reported by Symphony).
    for (const record of this.processTable.records.values()) {
      if (!record.ticketId) continue;
      const entry = tickets.get(record.ticketId) || { runs: [], info: {} };
      if (!entry.runs.some((r) => r.id === record.id)) entry.runs.push(record);
      tickets.set(record.ticketId, entry);
    }
    $("tickets-note").textContent = note;
    this.render(tickets);
  }

  render(tickets) {
    const ids = [...tickets.keys()].sort();
    $("tickets-empty").hidden = ids.length > 0;
    this.list.replaceChildren(...ids.map((id) => this.ticket(id, tickets.get(id))));
  }

  ticket(ticketId, { runs, info }) {
    runs.sort((a, b) => (a.startedAt || "").localeCompare(b.startedAt || ""));
    const loops = runs.filter((r) => r.kind === "symphony_loop" || r.kind === "plan_loop");
    const active = runs.filter((r) => ["starting", "running", "stopping"].includes(r.state));
    const details = el("details", { class: "ticket", "data-ticket": ticketId, open: this.open.has(ticketId) });
    const verdicts = el("div", { class: "verdicts" });
    const about = el("dl", { class: "facts ticket-info" });
    details.addEventListener("toggle", () => {
      if (details.open) {
        this.open.add(ticketId);
        this.loadDetails(ticketId, about, verdicts);
      } else this.open.delete(ticketId);
    });
    if (details.open) this.loadDetails(ticketId, about, verdicts);
    const summary = el(
      "summary",
      {},
      el("strong", { text: ticketId }),
      ` · ${runs.length} run${runs.length === 1 ? "" : "s"}`,
      loops.length ? ` · ${loops.length} loop${loops.length === 1 ? "" : "s"}` : "",
      active.length ? el("span", { class: "state state-running", text: `${active.length} active` }) : "",
      info.branch ? ` · ${info.branch}` : "",
    );
    const rows = runs.map((r) => {
      const labels = r.labels || {};
      let where;
      if (r.kind === "symphony_loop") {
        where = `loop: iteration ${labels.iteration ?? "?"} of ${labels.maxIterations ?? "?"}${labels.outcome ? ` · ${labels.outcome}` : ""}`;
      } else {
        const role = labels.judge ? `judge ${labels.judge}` : labels.role && labels.role !== "child" ? labels.role : "";
        where = [labels.iteration && `#${labels.iteration}`, role].filter(Boolean).join(" ") || (r.jobId ? `in ${r.jobId}` : "");
      }
      return el(
        "tr",
        { "data-run": r.id },
        el("td", {}, el("button", { type: "button", class: "link", text: r.id, onclick: () => this.onShowProcess(r.id) })),
        el("td", { text: r.kind }),
        el("td", { text: where }),
        el("td", {}, el("span", { class: `state state-${r.state}`, text: r.state })),
        el("td", { text: localTime(r.startedAt) }),
        el("td", { class: "num run-age", text: age(r) }),
        el("td", { class: "run-result", text: result(r) }),
        el("td", { class: "argv", text: shortArgv(r.argv, 80) }),
      );
    });
    const table = el(
      "div",
      { class: "table-wrap" },
      el(
        "table",
        {},
        el("caption", { class: "sr-only", text: `Runs of ${ticketId}` }),
        el("thead", {}, el("tr", {}, ...["Run", "Kind", "Iteration", "State", "Started", "Age", "Result", "Command"].map((h) => el("th", { scope: "col", text: h })))),
        el("tbody", {}, ...rows),
      ),
    );
    details.append(summary, about, el("h3", { text: "Runs and loop iterations" }), table, el("h3", { text: "Judge verdicts" }), verdicts);
    return details;
  }

  async loadDetails(ticketId, about, verdicts) {
    this.loadTicket(ticketId, about);
    this.loadVerdicts(ticketId, verdicts);
  }

  async loadTicket(ticketId, about) {
    let data;
    try {
      data = await api(`/api/gateway/symphony/status/${encodeURIComponent(ticketId)}`);
    } catch {
      return; // not a Symphony ticket (or no Symphony): the runs table says enough
    }
    const t = data?.ticket;
    if (!t) return;
    const facts = [["Branch", t.branch], ["Worktree", t.worktree], ["Base", t.baseRef], ["Provider", t.provider], ["Repo", t.repoId]];
    about.replaceChildren(...facts.filter(([, v]) => v).flatMap(([k, v]) => [el("dt", { text: k }), el("dd", { text: String(v) })]));
  }

  async loadVerdicts(ticketId, box) {
    box.replaceChildren(el("p", { class: "muted", text: "Loading verdicts…" }));
    let data;
    try {
      data = await api(`/api/gateway/symphony/judges/${encodeURIComponent(ticketId)}`);
    } catch (err) {
      if (err instanceof SessionExpired) return;
      const text = err instanceof ApiError && [404, 501].includes(err.status) ? "No verdicts for this ticket." : `Could not load verdicts: ${err.message}`;
      box.replaceChildren(el("p", { class: "muted", text }));
      return;
    }
    const rows = normalizeVerdicts(data);
    if (!rows.length) {
      box.replaceChildren(el("p", { class: "muted", text: "No verdicts for this ticket yet." }));
      return;
    }
    box.replaceChildren(
      el(
        "table",
        { class: "verdict-table" },
        el("caption", { class: "sr-only", text: `Judge verdicts of ${ticketId}` }),
        el("thead", {}, el("tr", {}, ...["Iteration", "Judge", "Verdict", "Score", "Justification"].map((h) => el("th", { scope: "col", text: h })))),
        el(
          "tbody",
          {},
          ...rows.map((v) =>
            el(
              "tr",
              {},
              el("td", { class: "num", text: String(v.iteration) }),
              el("td", { text: v.name }),
              el("td", {}, el("span", { class: `verdict verdict-${v.passed === true ? "pass" : v.passed === false ? "fail" : "unknown"}`, text: v.passed === true ? "pass" : v.passed === false ? "fail" : "?" })),
              el("td", { class: "num", text: v.score }),
              el("td", { class: "feedback", text: typeof v.detail === "string" ? v.detail : JSON.stringify(v.detail) }),
            ),
          ),
        ),
      ),
    );
  }
}
