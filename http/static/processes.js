// The live process table: a snapshot from GET /processes, then the NDJSON status stream keeps
// it current. Rows are keyed by process id and updated in place, so focus and scroll survive
// a busy stream.

import { readNdjson, SessionExpired } from "./api.js";
import { $, age, el, isActive, setText, shortArgv, shortCommand } from "./util.js";

const KINDS = ["symphony", "symphony_loop", "plan_loop", "codex_review", "deploy", "chat", "learnings", "git"];
const RETRY_MS = 1000;
// Short-lived bookkeeping processes (git commands run for a worktree or a commit): once ended,
// the default view folds them away so they do not bury the live processes.
const HELPER_KINDS = new Set(["git"]);

export class ProcessTable {
  constructor({ onSelect, onAction, onConnection, onChange }) {
    this.onChange = onChange || (() => {});
    this.records = new Map();
    this.rows = new Map();
    this.tbody = $("process-rows");
    this.onSelect = onSelect;
    this.onAction = onAction;
    this.onConnection = onConnection || (() => {});
    this.selected = null;
    this.frame = 0;
    this.controller = null;
    this.kindSelect = $("filter-kind");
    this.ticketInput = $("filter-ticket");
    this.stateSelect = $("filter-state");
    for (const kind of KINDS) this.addKind(kind);
    for (const input of [this.kindSelect, this.ticketInput, this.stateSelect]) {
      input.addEventListener("input", () => this.schedule());
    }
    $("filters").addEventListener("submit", (e) => e.preventDefault());
    $("processes-show-all").addEventListener("click", () => {
      this.stateSelect.value = "";
      this.schedule();
    });
    this.ticker = setInterval(() => this.tickAges(), 1000);
  }

  addKind(kind) {
    if (!kind || [...this.kindSelect.options].some((o) => o.value === kind)) return;
    this.kindSelect.append(el("option", { value: kind, text: kind }));
  }

  start() {
    this.stop();
    const controller = new AbortController();
    this.controller = controller;
    this.run(controller);
  }

  stop() {
    if (this.controller) this.controller.abort();
    this.controller = null;
  }

  async run(controller) {
    const { signal } = controller;
    while (!signal.aborted) {
      try {
        // snapshot=1: every record first, then each change, on one stream, so nothing falls
        // between a list call and a subscription. A reconnect takes a fresh snapshot.
        this.onConnection("connecting…");
        const onOpen = () => this.onConnection("live");
        await readNdjson("/api/gateway/processes/stream?snapshot=1", (batch) => this.ingest(batch), { signal, onOpen });
      } catch (err) {
        if (err instanceof SessionExpired || signal.aborted) return;
        this.onConnection(`reconnecting: ${err.message || err}`);
      }
      if (signal.aborted) return;
      this.onConnection("reconnecting…");
      await new Promise((resolve) => setTimeout(resolve, RETRY_MS));
    }
  }

  ingest(batch) {
    for (const item of batch) {
      if ((item.type === "status" || item.type === "end") && item.process) this.upsert(item.process);
      else if (item.type === "snapshot" && Array.isArray(item.processes)) item.processes.forEach((r) => this.upsert(r));
      else if (item.type === "removed" && item.id) this.remove(item.id);
    }
  }

  // Retention dropped an old record (e.g. a git helper): it leaves the table, not the open log.
  remove(id) {
    if (this.records.delete(id)) this.schedule();
  }

  upsert(record) {
    if (!record || !record.id) return;
    this.records.set(record.id, record);
    this.addKind(record.kind);
    if (this.selected === record.id) this.onSelect(record, { update: true });
    this.onChange(record);
    this.schedule();
  }

  get(id) {
    return this.records.get(id);
  }

  matches(record) {
    const kind = this.kindSelect.value;
    const ticket = this.ticketInput.value.trim().toLowerCase();
    const state = this.stateSelect.value;
    if (kind && record.kind !== kind) return false;
    if (ticket && !(record.ticketId || "").toLowerCase().includes(ticket)) return false;
    if (state === "active") return isActive(record);
    if (state === "recent") return isActive(record) || !HELPER_KINDS.has(record.kind);
    if (state && record.state !== state) return false;
    return true;
  }

  schedule() {
    if (this.frame) return;
    this.frame = requestAnimationFrame(() => {
      this.frame = 0;
      this.render();
    });
  }

  select(id) {
    this.selected = id;
    for (const [rid, row] of this.rows) row.setAttribute("aria-selected", String(rid === id));
    const record = this.records.get(id);
    if (record) this.onSelect(record, { update: false });
  }

  render() {
    const shown = [...this.records.values()].filter((r) => this.matches(r));
    shown.sort((a, b) => (b.startedAt || "").localeCompare(a.startedAt || "") || b.id.localeCompare(a.id));
    const keep = new Set(shown.map((r) => r.id));
    for (const [id, row] of this.rows) {
      if (!keep.has(id)) {
        row.remove();
        this.rows.delete(id);
      }
    }
    shown.forEach((record, index) => {
      let row = this.rows.get(record.id);
      if (!row) {
        row = this.makeRow(record.id);
        this.rows.set(record.id, row);
      }
      this.fill(row, record);
      const at = this.tbody.children[index];
      if (at !== row) this.tbody.insertBefore(row, at || null);
    });
    const total = this.records.size;
    setText($("process-count"), shown.length === total ? `${total} processes` : `${shown.length} of ${total} processes`);
    $("processes-empty").hidden = shown.length > 0;
    // What the default view folded away, and one click to see it.
    let folded = 0;
    if (this.stateSelect.value === "recent") {
      this.stateSelect.value = "";
      folded = [...this.records.values()].filter((r) => this.matches(r)).length - shown.length;
      this.stateSelect.value = "recent";
    }
    $("processes-folded").hidden = folded === 0;
    setText($("processes-folded-text"), `${folded} ended helper ${folded === 1 ? "record" : "records"} (${[...HELPER_KINDS].join(", ")}) folded away.`);
  }

  makeRow(id) {
    const open = el("button", { type: "button", class: "link", onclick: () => this.select(id) });
    const kill = el("button", { type: "button", class: "small danger", text: "Kill", onclick: () => this.onAction("kill", id) });
    const teardown = el("button", { type: "button", class: "small danger", text: "Tear down", onclick: () => this.onAction("teardown", id) });
    const cells = {
      id: el("td", {}, open),
      command: el("td", { class: "command-cell" }, el("code")),
      kind: el("td"),
      ticket: el("td"),
      state: el("td", {}, el("span", { class: "state" })),
      pid: el("td", { class: "num" }),
      age: el("td", { class: "num" }),
      restarts: el("td", { class: "num" }),
      stop: el("td"),
      actions: el("td", { class: "row-actions" }, kill, teardown),
    };
    const row = el("tr", { "data-id": id, "aria-selected": String(this.selected === id) }, ...Object.values(cells));
    row.cells_ = { ...cells, open, kill, teardown };
    return row;
  }

  fill(row, r) {
    const c = row.cells_;
    setText(c.open, r.id);
    c.open.title = shortArgv(r.argv, 400);
    c.open.setAttribute("aria-label", `Show log of ${r.id} (${shortArgv(r.argv, 60)})`);
    const code = c.command.firstChild;
    setText(code, shortCommand(r.argv));
    c.command.title = shortArgv(r.argv, 2000);
    setText(c.kind, r.kind);
    setText(c.ticket, r.ticketId || "");
    const badge = c.state.firstChild;
    setText(badge, r.state + (r.tornDown ? " · torn down" : ""));
    badge.className = `state state-${r.state}`;
    row.dataset.state = r.state;
    setText(c.pid, r.pid ?? "");
    setText(c.age, age(r));
    setText(c.restarts, r.restarts ?? 0);
    const exit = r.exitCode !== null && r.exitCode !== undefined ? `exit ${r.exitCode}` : r.signal ? `${r.signal}` : "";
    setText(c.stop, [r.stopReason, exit].filter(Boolean).join(" · "));
    c.kill.disabled = !isActive(r);
    c.kill.setAttribute("aria-label", `Kill ${r.id}`);
    c.teardown.disabled = Boolean(r.tornDown);
    c.teardown.setAttribute("aria-label", `Tear down ${r.id}`);
  }

  tickAges() {
    for (const [id, row] of this.rows) {
      const record = this.records.get(id);
      if (record && isActive(record)) setText(row.cells_.age, age(record));
    }
  }
}
