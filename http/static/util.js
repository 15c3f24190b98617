// Small DOM helpers. Data always goes in through textContent, never as HTML.

export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "class") node.className = value;
    else if (key === "text") node.textContent = value;
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else if (key in node && typeof value !== "string") node[key] = value;
    else node.setAttribute(key, value === true ? "" : value);
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

export function $(id) {
  return document.getElementById(id);
}

export function setText(node, text) {
  const value = text === null || text === undefined ? "" : String(text);
  if (node.textContent !== value) node.textContent = value;
}

export function parseTime(iso) {
  if (!iso) return null;
  const t = Date.parse(iso);
  return Number.isNaN(t) ? null : t;
}

/** 5s, 3m 02s, 4h 10m, 2d 3h */
export function duration(ms) {
  if (ms === null || ms === undefined || ms < 0) return "";
  const s = Math.floor(ms / 1000);
  if (s < 60) return `${s}s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m}m ${String(s % 60).padStart(2, "0")}s`;
  const h = Math.floor(m / 60);
  if (h < 24) return `${h}h ${String(m % 60).padStart(2, "0")}m`;
  return `${Math.floor(h / 24)}d ${h % 24}h`;
}

export function localTime(iso) {
  const t = parseTime(iso);
  return t === null ? "" : new Date(t).toLocaleString();
}

export const ACTIVE_STATES = new Set(["starting", "running", "stopping"]);

export function isActive(record) {
  return ACTIVE_STATES.has(record.state);
}

/** Age of a process: running time so far, or how long it ran once ended. */
export function age(record, now = Date.now()) {
  const start = parseTime(record.startedAt);
  if (start === null) return "";
  const end = parseTime(record.endedAt);
  return duration((end ?? now) - start);
}

export function shortArgv(argv, max = 120) {
  const text = (argv || []).map((a) => (/[\s"']/.test(a) ? JSON.stringify(a) : a)).join(" ");
  return text.length > max ? `${text.slice(0, max - 1)}…` : text;
}

/** The program's base name and its arguments, cut to `max`: what fits in a table cell. */
export function shortCommand(argv, max = 48) {
  if (!argv || !argv.length) return "";
  const words = [argv[0].split("/").pop() || argv[0], ...argv.slice(1)];
  return shortArgv(words, max);
}

const confirmDialog = () => document.getElementById("confirm");

/** A modal yes/no; resolves true only on the OK button. Cancel has the initial focus. */
export function confirmAction({ title, text, ok }) {
  const dialog = confirmDialog();
  document.getElementById("confirm-title").textContent = title;
  document.getElementById("confirm-text").textContent = text;
  document.getElementById("confirm-ok").textContent = ok;
  dialog.returnValue = "";
  return new Promise((resolve) => {
    dialog.addEventListener("close", () => resolve(dialog.returnValue === "ok"), { once: true });
    dialog.showModal();
    document.getElementById("confirm-cancel").focus();
  });
}
