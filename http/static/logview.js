// The log pane: follows a process's NDJSON log, pauses, resumes from the last seq, and renders
// only the rows in view, so 100,000 lines scroll as smoothly as 100.
//
// Lines are kept in three parallel arrays (seq, stream, text); the DOM holds one spacer as tall
// as all lines and a few dozen row elements positioned over the visible window.

import { readNdjson, SessionExpired } from "./api.js";
import { $, setText } from "./util.js";

const ROW = 18; // px, must match .logline in style.css
const OVERSCAN = 20;
const MAX_LINES = 500_000; // beyond this the oldest lines are dropped from the view (never from the gateway)
const RETRY_MS = 1000;

export class LogPane {
  constructor({ onRecord } = {}) {
    this.view = $("logview");
    this.spacer = $("logspacer");
    this.rows = $("loglines");
    this.status = $("log-status");
    this.pauseButton = $("log-pause");
    this.followBox = $("log-follow");
    this.onRecord = onRecord || (() => {});
    this.processId = null;
    this.reset();
    this.frame = 0;
    this.view.addEventListener("scroll", () => this.onScroll(), { passive: true });
    this.pauseButton.addEventListener("click", () => (this.paused ? this.resume() : this.pause()));
    this.followBox.addEventListener("change", () => {
      if (this.followBox.checked) this.scrollToEnd();
    });
    $("log-end").addEventListener("click", () => {
      this.followBox.checked = true;
      this.scrollToEnd();
    });
    this.view.addEventListener("keydown", (e) => this.onKey(e));
    // Only a person's scrolling changes "follow"; layout changes (the pane resizing, the
    // status line wrapping) also move scrollTop and must not switch following off.
    this.userIntent = -Infinity;
    this.dragging = false;
    const intent = () => (this.userIntent = performance.now());
    for (const type of ["wheel", "keydown", "touchmove"]) this.view.addEventListener(type, intent, { passive: true });
    this.view.addEventListener("pointerdown", () => (this.dragging = true));
    window.addEventListener("pointerup", () => (this.dragging = false));
    new ResizeObserver(() => this.schedule()).observe(this.view);
  }

  reset() {
    this.seqs = [];
    this.streams = [];
    this.texts = [];
    this.lastSeq = 0;
    this.ended = false;
    this.paused = false;
    this.connected = false;
    this.error = null;
    this.controller = null;
    this.generation = (this.generation || 0) + 1;
  }

  open(processId) {
    this.close();
    this.reset();
    this.processId = processId;
    this.followBox.checked = true;
    this.pauseButton.setAttribute("aria-pressed", "false");
    this.pauseButton.textContent = "Pause";
    this.view.scrollTop = 0;
    this.schedule();
    this.connect();
  }

  close() {
    if (this.controller) this.controller.abort();
    this.controller = null;
    this.processId = null;
    this.generation += 1;
  }

  pause() {
    this.paused = true;
    if (this.controller) this.controller.abort();
    this.controller = null;
    this.connected = false;
    this.pauseButton.setAttribute("aria-pressed", "true");
    this.pauseButton.textContent = "Resume";
    this.updateStatus();
  }

  resume() {
    this.paused = false;
    this.pauseButton.setAttribute("aria-pressed", "false");
    this.pauseButton.textContent = "Pause";
    this.connect();
  }

  async connect() {
    if (!this.processId || this.paused || this.controller) return;
    const generation = this.generation;
    const controller = new AbortController();
    this.controller = controller;
    this.error = null;
    this.connected = true;
    this.updateStatus();
    const url = `/api/gateway/processes/${encodeURIComponent(this.processId)}/logs?since=${this.lastSeq}&follow=1`;
    try {
      await readNdjson(url, (batch) => this.ingest(batch, generation), { signal: controller.signal });
    } catch (err) {
      if (err instanceof SessionExpired) return;
      this.error = err.message || String(err);
    } finally {
      if (this.controller === controller) this.controller = null;
    }
    if (generation !== this.generation || controller.signal.aborted) return;
    this.connected = false;
    this.updateStatus();
    // The stream ended without an `end` line (gateway restart, network): pick up where we were.
    if (!this.ended && !this.paused) setTimeout(() => generation === this.generation && this.connect(), RETRY_MS);
  }

  ingest(batch, generation) {
    if (generation !== this.generation) return;
    let added = 0;
    for (const item of batch) {
      if (item.type === "log") {
        if (item.seq <= this.lastSeq) continue; // seen already: a resume never duplicates
        this.seqs.push(item.seq);
        this.streams.push(item.stream);
        this.texts.push(item.text);
        this.lastSeq = item.seq;
        added += 1;
      } else if (item.type === "end") {
        this.ended = true;
        if (item.process) this.onRecord(item.process);
      } else if (item.type === "status" && item.process) {
        this.onRecord(item.process);
      }
    }
    if (this.seqs.length > MAX_LINES) {
      const drop = this.seqs.length - MAX_LINES;
      this.seqs.splice(0, drop);
      this.streams.splice(0, drop);
      this.texts.splice(0, drop);
    }
    if (added || this.ended) this.schedule();
  }

  atEnd() {
    return this.view.scrollTop + this.view.clientHeight >= this.view.scrollHeight - ROW;
  }

  scrollToEnd() {
    this.view.scrollTop = this.view.scrollHeight;
    this.schedule();
  }

  onScroll() {
    // Scrolling up stops following; scrolling back to the end starts it again.
    if (this.dragging || performance.now() - this.userIntent < 500) this.followBox.checked = this.atEnd();
    this.schedule();
  }

  onKey(event) {
    const keys = { Home: -Infinity, End: Infinity };
    if (event.key in keys) {
      event.preventDefault();
      this.view.scrollTop = keys[event.key] < 0 ? 0 : this.view.scrollHeight;
    }
  }

  schedule() {
    if (this.frame) return;
    this.frame = requestAnimationFrame(() => {
      this.frame = 0;
      this.render();
    });
  }

  render() {
    const total = this.seqs.length;
    const height = total * ROW;
    if (this.spacer.style.height !== `${height}px`) this.spacer.style.height = `${height}px`;
    if (this.followBox.checked) this.view.scrollTop = this.view.scrollHeight;
    const top = this.view.scrollTop;
    const visible = Math.ceil((this.view.clientHeight || 400) / ROW);
    const first = Math.max(0, Math.floor(top / ROW) - OVERSCAN);
    const last = Math.min(total, Math.floor(top / ROW) + visible + OVERSCAN);
    this.rows.style.transform = `translateY(${first * ROW}px)`;
    const want = last - first;
    while (this.rows.childElementCount < want) {
      const row = document.createElement("div");
      row.className = "logline";
      const seq = document.createElement("span");
      seq.className = "seq";
      seq.setAttribute("aria-hidden", "true");
      row.append(seq, document.createTextNode(""));
      this.rows.append(row);
    }
    while (this.rows.childElementCount > want) this.rows.lastElementChild.remove();
    let row = this.rows.firstElementChild;
    for (let i = first; i < last; i += 1, row = row.nextElementSibling) {
      const stream = this.streams[i];
      const cls = stream === "stdout" ? "logline" : `logline ${stream}`;
      if (row.className !== cls) row.className = cls;
      if (row.dataset.seq !== String(this.seqs[i])) {
        row.dataset.seq = String(this.seqs[i]);
        row.firstChild.textContent = String(this.seqs[i]);
        row.lastChild.textContent = this.texts[i];
      }
    }
    this.updateStatus();
  }

  updateStatus() {
    const parts = [`${this.seqs.length.toLocaleString()} lines`];
    if (this.lastSeq) parts.push(`last seq ${this.lastSeq}`);
    if (this.paused) parts.push("paused");
    else if (this.ended) parts.push("ended");
    else if (this.error) parts.push(`reconnecting (${this.error})`);
    else if (this.connected) parts.push("live");
    setText(this.status, parts.join(" · "));
    this.status.dataset.state = this.paused ? "paused" : this.ended ? "ended" : this.connected ? "live" : "idle";
  }
}
