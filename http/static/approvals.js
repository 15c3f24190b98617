// Pending approvals: requests the policy holds until a person decides. They arrive over
// GET /api/gateway/approvals/stream (the whole list now and on every change), so a held request
// shows at once; the stream reconnects after a second if it breaks. The route is exempt from
// policy, so it never holds itself.

import { api, ApiError, readNdjson, SessionExpired } from "./api.js";
import { $, confirmAction, el, localTime, parseTime, duration, setText, shortArgv } from "./util.js";

const RETRY_MS = 1000;

export class ApprovalsView {
  constructor({ onCount }) {
    this.list = $("approvals-pending");
    this.recent = $("approvals-recent");
    this.onCount = onCount;
    this.cards = new Map();
    this.busy = new Set();
    this.controller = null;
    this.pending = [];
    // "expires in" counts down between stream updates.
    setInterval(() => this.tick(), 1000);
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
        await readNdjson("/api/gateway/approvals/stream", (batch) => this.ingest(batch), { signal });
      } catch (err) {
        if (err instanceof SessionExpired || signal.aborted) return;
      }
      if (signal.aborted) return;
      await new Promise((resolve) => setTimeout(resolve, RETRY_MS));
    }
  }

  ingest(batch) {
    const last = batch.filter((item) => item.type === "approvals").pop();
    if (!last) return;
    const all = last.approvals || [];
    this.render(all.filter((a) => a.status === "pending"), all.filter((a) => a.status !== "pending"));
  }

  /** A one-off read (the tab was opened): the stream keeps it current afterwards. */
  async refresh() {
    const data = await api("/api/gateway/approvals?all=1");
    this.ingest([{ type: "approvals", approvals: data.approvals || [] }]);
  }

  tick() {
    for (const approval of this.pending) {
      const card = this.cards.get(approval.id);
      if (!card) continue;
      const left = (parseTime(approval.expiresAt) ?? Date.now()) - Date.now();
      setText(card.querySelector(".expires"), left > 0 ? `expires in ${duration(left)}` : "expiring");
    }
  }

  render(pending, recent) {
    this.pending = pending;
    const keep = new Set(pending.map((a) => a.id));
    for (const [id, card] of this.cards) {
      if (!keep.has(id)) {
        card.remove();
        this.cards.delete(id);
      }
    }
    for (const approval of pending) {
      let card = this.cards.get(approval.id);
      if (!card) {
        card = this.makeCard(approval);
        this.cards.set(approval.id, card);
        this.list.append(card);
      }
    }
    this.tick();
    $("approvals-empty").hidden = pending.length > 0;
    this.onCount(pending.length);
    this.recent.replaceChildren(
      ...recent
        .slice(-10)
        .reverse()
        .map((a) =>
          el("li", {}, el("span", { class: `outcome outcome-${a.status}`, text: a.status }), " ", `${a.method} ${a.path}`, " ",
            el("span", { class: "muted", text: `${a.operation || "unknown operation"} · ${a.principal} · ${localTime(a.createdAt)}` })),
        ),
    );
  }

  makeCard(a) {
    const title = `${a.method} ${a.path}`;
    const buttons = [
      ["approved", "Approve", "primary"],
      ["denied", "Deny", "danger"],
      ["always_allow", "Always allow", ""],
    ].map(([decision, label, cls]) =>
      el("button", {
        type: "button",
        class: cls,
        text: label,
        "data-decision": decision,
        "aria-label": `${label}: ${title}`,
        onclick: () => this.decide(a, decision, card),
      }),
    );
    const d = a.detail || {};
    // What will run, before who asks and why: the command, where, with which variables.
    const facts = [
      ["Command", d.argv ? shortArgv(d.argv, 2000) : null, "argv"],
      ["Directory", d.cwd, "cwd"],
      ["Sets variables", d.envKeys?.length ? d.envKeys.join(", ") : null, "env"],
      ["Ticket", d.ticketId, "ticket"],
      ["Kind", d.kind, "kind"],
      ["Repository", d.repoPath, "repo"],
      ["Branch", d.branch, "branch"],
      ["Agent", d.provider, "provider"],
      ["Prompt", d.prompt || d.message, "prompt"],
      ["Operation", `${a.operation || "unknown operation"} (${a.tier || "?"} risk)`, "operation"],
      ["Asked by", a.principal, "principal"],
      ["Request", title, "request"],
    ].filter(([, value]) => value);
    const card = el(
      "li",
      { class: "card approval", "data-id": a.id },
      el("h3", {}, d.argv ? el("code", { class: "argv", text: shortArgv(d.argv, 300) }) : el("code", { text: title })),
      el("p", {},
        el("span", { class: `tier tier-${a.tier || "high"}`, text: `${a.tier || "?"} risk` }), " ",
        `${a.operation || "unknown operation"} · asked by ${a.principal} · ${localTime(a.createdAt)} · `,
        el("span", { class: "expires" })),
      el("dl", { class: "facts approval-facts" }, ...facts.flatMap(([k, v, key]) => [el("dt", { text: k }), el("dd", { "data-fact": key, text: String(v) })])),
      a.reason ? el("p", { class: "reason" }, "Reason: ", el("q", { text: a.reason })) : null,
      el("div", { class: "actions" }, ...buttons),
      el("p", { class: "error", role: "alert" }),
    );
    return card;
  }

  async decide(approval, decision, card) {
    if (this.busy.has(approval.id)) return;
    if (decision === "always_allow") {
      const ok = await confirmAction({
        title: "Always allow?",
        text: `Let every ${approval.method} ${approval.path} (${approval.operation}) from ${approval.principal} run without asking for 7 days.`,
        ok: "Always allow",
      });
      if (!ok) return;
    }
    this.busy.add(approval.id);
    card.querySelectorAll("button").forEach((b) => (b.disabled = true));
    try {
      await api(`/api/gateway/approvals/${encodeURIComponent(approval.id)}`, { method: "POST", body: { decision } });
      card.classList.add("decided");
    } catch (err) {
      if (err instanceof SessionExpired) return;
      const message = err instanceof ApiError && [404, 409].includes(err.status) ? `no longer pending: ${err.message}` : err.message;
      setText(card.querySelector(".error"), message);
      card.querySelectorAll("button").forEach((b) => (b.disabled = false));
    } finally {
      this.busy.delete(approval.id);
    }
  }
}
