// Health, version, the cloud relay and the five binaries (path, version, where the path came from).

import { api, ApiError, publicJson, SessionExpired } from "./api.js";
import { $, el, localTime } from "./util.js";

const BINARIES = ["claude", "codex", "gh", "git", "python3"];

function fact(dl, term, value) {
  dl.append(el("dt", { text: term }), el("dd", { text: value === null || value === undefined ? "—" : String(value) }));
}

function bytes(n) {
  if (typeof n !== "number") return "";
  const units = ["B", "KB", "MB", "GB", "TB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) {
    n /= 1024;
    i += 1;
  }
  return `${n.toFixed(i ? 1 : 0)} ${units[i]}`;
}

function describeCheck(name, check) {
  const parts = [];
  if (name === "disk" && check.freeBytes !== undefined) parts.push(`${bytes(check.freeBytes)} free of ${bytes(check.totalBytes)} at ${check.path}`);
  if (name === "database" && check.schemaVersion !== undefined) parts.push(`schema v${check.schemaVersion}, ${check.latencyMs} ms`);
  if (name === "supervisor" && check.active !== undefined) parts.push(`${check.active} active, ${check.linesIngested ?? 0} lines ingested`);
  if (check.error) parts.push(check.error);
  return parts.join("; ");
}

const RELAY_STATES = {
  off: "off (no relay configured)",
  connecting: "connecting",
  connected: "connected",
  degraded: "degraded",
};

function renderRelay(relay) {
  const dl = $("sys-relay");
  dl.replaceChildren();
  if (!relay) {
    fact(dl, "State", "unknown");
    return;
  }
  const state = el("span", { class: `ok ok-${relay.state === "connected"}`, text: RELAY_STATES[relay.state] || relay.state });
  dl.append(el("dt", { text: "State" }), el("dd", { "data-relay-state": relay.state }, state));
  if (relay.state === "off") return;
  if (relay.url) fact(dl, "Relay", relay.url);
  fact(dl, "Compute target", relay.computeTargetId);
  if (relay.connectedSince) fact(dl, "Connected since", localTime(relay.connectedSince));
  if (relay.lastError) fact(dl, "Last error", relay.lastError);
  if (relay.retryAt) fact(dl, "Next retry", localTime(relay.retryAt));
  fact(dl, "Commands", `${relay.activeCommands ?? 0} running, ${relay.queueDepth ?? 0} queued`);
  for (const c of relay.inFlight || []) fact(dl, c.commandId.slice(0, 8), `${c.method} ${c.path} (${c.operationId})`);
}

export class SystemView {
  constructor() {
    $("system-refresh").addEventListener("click", () => this.refresh());
  }

  async refresh() {
    const [health, version, checks, binaries] = await Promise.allSettled([
      publicJson("/health"),
      api("/api/gateway/version"),
      api("/api/gateway/health-check"),
      api("/api/gateway/settings/binary-paths"),
    ]);
    if ([version, checks, binaries].some((r) => r.status === "rejected" && r.reason instanceof SessionExpired)) return;

    const gw = $("sys-gateway");
    gw.replaceChildren();
    const h = health.status === "fulfilled" ? health.value : null;
    const v = version.status === "fulfilled" ? version.value : null;
    fact(gw, "Status", h ? h.status : `unreachable (${health.reason?.message})`);
    fact(gw, "Version", v?.version ?? h?.version);
    if (v?.python) fact(gw, "Python", `${v.python} on ${v.platform}`);
    if (h) {
      fact(gw, "Port", h.port);
      fact(gw, "PID", h.pid);
      fact(gw, "Started", localTime(h.startedAt));
      if (h.instance) fact(gw, "Instance", h.instance);
      const ops = h.capabilities?.operations;
      if (Array.isArray(ops)) fact(gw, "Operations", `${ops.length}`);
    }

    const list = $("sys-checks");
    let body = null;
    if (checks.status === "fulfilled") body = checks.value;
    else if (checks.reason instanceof ApiError && checks.reason.data?.checks) body = checks.reason.data; // 503: degraded
    if (body?.checks) {
      list.replaceChildren(
        el("li", {}, el("span", { class: `ok ok-${body.status === "ok"}`, text: body.status }), " overall"),
        ...Object.entries(body.checks).map(([name, check]) =>
          el("li", {}, el("span", { class: `ok ok-${Boolean(check.ok)}`, text: check.ok ? "ok" : "failing" }), ` ${name}`, el("span", { class: "muted", text: ` ${describeCheck(name, check)}` })),
        ),
      );
    } else list.replaceChildren(el("li", { class: "muted", text: `health check unavailable (${checks.reason?.message})` }));
    renderRelay(body?.relay || h?.relay || null);

    // Settings first (path, override, version); /health's capabilities fill gaps.
    const fromSettings = binaries.status === "fulfilled" ? binaries.value?.binaries || binaries.value || {} : {};
    const fromHealth = h?.capabilities?.binaries || {};
    const names = [...new Set([...BINARIES, ...Object.keys(fromSettings), ...Object.keys(fromHealth)])];
    $("sys-binaries").replaceChildren(
      ...names.map((name) => {
        const info = fromSettings[name] || fromHealth[name] || null;
        const missing = !info || !info.path;
        return el(
          "tr",
          { "data-binary": name, class: missing ? "missing" : "" },
          el("th", { scope: "row", text: name }),
          el("td", { class: "path", text: missing ? "not found: set its path in settings/binary-paths" : info.path }),
          el("td", { text: info?.version || (missing ? "—" : "unknown") }),
          el("td", { text: info?.source || (info?.override ? "override" : missing ? "—" : "PATH") }),
        );
      }),
    );
  }
}
