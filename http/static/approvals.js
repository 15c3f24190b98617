// Pending approvals: requests the policy holds until a person decides. Polled once a second
// (the list is tiny and the route is exempt from policy, so it never holds itself).

import { api, ApiError, listFrom, SessionExpired } from "./api.js";
import { $, confirmAction, el, localTime, parseTime, duration, setText } from "./util.js";

const POLL_MS = 1000;

export class ApprovalsView {
  constructor({ onCount }) {
    this.list = $("approvals-pending");
    this.recent = $("approvals-recent");
    this.onCount = onCount;
    this.timer = 0;
    this.cards = new Map();
    this.busy = new Set();
    this.running = false;
  }

  start() {
    this.running = true;
    this.poll();
  }

  stop() {
    this.running = false;
    clearTimeout(this.timer);
  }

  async poll() {
    clearTimeout(this.timer);
    try {
      await this.refresh();
    } catch (err) {
      if (err instanceof SessionExpired) return;
    }
    if (this.running) this.timer = setTimeout(() => this.poll(), POLL_MS);
  }

  async refresh() {
    // ?all=1 adds the most recent outcomes to the pending ones.
    const all = listFrom(await api("/api/gateway/approvals?all=1"), "approvals", "items");
    const pending = all.filter((a) => !a.status || a.status === "pending");
    const recent = all.filter((a) => a.status && a.status !== "pending");
    this.render(pending, recent);
  }

  render(pending, recent) {
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
      const left = (parseTime(approval.expiresAt) ?? Date.now()) - Date.now();
      setText(card.querySelector(".expires"), left > 0 ? `expires in ${duration(left)}` : "expiring");
    }
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
    const card = el(
      "li",
      { class: "card approval", "data-id": a.id },
      el("h3", {}, el("code", { text: title })),
      el("p", {},
        el("span", { class: `tier tier-${a.tier || "high"}`, text: `${a.tier || "?"} risk` }), " ",
        `${a.operation || "unknown operation"} · asked by ${a.principal} · ${localTime(a.createdAt)} · `,
        el("span", { class: "expires" })),
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
    this.refresh().catch(() => {});
  }
}
