// The log pane: follows a process's NDJSON log, pauses, resumes from the last seq, filters by
// stream, searches every line it holds, and shows an agent run as a conversation.
//
// Raw view: lines are kept in parallel arrays (seq, stream, text, event); the DOM holds one
// spacer as tall as all shown lines and only the rows in view (plus a margin), moved with a
// transform. Long lines wrap: the font is monospace and rows break at any character, so a
// line takes ceil(length / columns) rows of 18 px, which is computed, never measured per line.
// Conversation view (agent runs): one entry per parsed event, folded tool results; entries
// are plain DOM (a run has far fewer events than lines) capped at MAX_ENTRIES.

import { readNdjson, SessionExpired } from "./api.js";
import { appendAnsi, stripAnsi } from "./ansi.js";
import { lineEntries } from "./talk.js";
import { $, setText } from "./util.js";

const ROW = 18; // px, must match .logline in style.css
const OVERSCAN = 20;
const MAX_LINES = 500_000; // beyond this the oldest lines are dropped from the view (never from the gateway)
const MAX_ENTRIES = 20_000;
const RETRY_MS = 1000;
const STREAMS = ["stdout", "stderr", "system"];

export class LogPane {
  constructor({ onRecord } = {}) {
    this.view = $("logview");
    this.spacer = $("logspacer");
    this.rows = $("loglines");
    this.talk = $("logtalk");
    this.status = $("log-status");
    this.pauseButton = $("log-pause");
    this.followBox = $("log-follow");
    this.modeButton = $("log-mode");
    this.searchBox = $("log-search");
    this.searchCount = $("log-search-count");
    this.onRecord = onRecord || (() => {});
    this.processId = null;
    this.mode = "raw";
    this.userMode = null; // what the person picked for this log, if anything
    this.cols = 0;
    this.reset();
    this.frame = 0;
    for (const el of [this.view, this.talk]) el.addEventListener("scroll", () => this.onScroll(el), { passive: true });
    this.pauseButton.addEventListener("click", () => (this.paused ? this.resume() : this.pause()));
    this.followBox.addEventListener("change", () => {
      if (this.followBox.checked) this.scrollToEnd();
    });
    $("log-end").addEventListener("click", () => {
      this.followBox.checked = true;
      this.scrollToEnd();
    });
    this.modeButton.addEventListener("click", () => this.setMode(this.mode === "talk" ? "raw" : "talk", true));
    for (const stream of STREAMS) $(`log-show-${stream}`).addEventListener("change", () => this.refilter());
    this.searchBox.addEventListener("input", () => this.search(this.searchBox.value));
    this.searchBox.addEventListener("keydown", (e) => {
      if (e.key === "Enter") {
        e.preventDefault();
        this.step(e.shiftKey ? -1 : 1);
      } else if (e.key === "Escape") {
        this.searchBox.value = "";
        this.search("");
      }
    });
    $("log-next").addEventListener("click", () => this.step(1));
    $("log-prev").addEventListener("click", () => this.step(-1));
    this.view.addEventListener("keydown", (e) => this.onKey(e, this.view));
    this.talk.addEventListener("keydown", (e) => this.onKey(e, this.talk));
    // Only a person's scrolling changes "follow"; layout changes (the pane resizing, the
    // status line wrapping) also move scrollTop and must not switch following off.
    this.userIntent = -Infinity;
    this.dragging = false;
    const intent = () => (this.userIntent = performance.now());
    for (const el of [this.view, this.talk]) {
      for (const type of ["wheel", "keydown", "touchmove"]) el.addEventListener(type, intent, { passive: true });
      el.addEventListener("pointerdown", () => (this.dragging = true));
    }
    window.addEventListener("pointerup", () => (this.dragging = false));
    new ResizeObserver(() => this.measure()).observe(this.view);
  }

  reset() {
    this.seqs = [];
    this.streams = [];
    this.texts = [];
    this.events = [];
    this.shown = []; // indices into the arrays that pass the stream filter
    this.cum = [0]; // cum[k]: wrapped rows before shown[k]
    this.talkIndex = []; // line index of each conversation entry
    this.seenEvents = false;
    this.lastSeq = 0;
    this.ended = false;
    this.paused = false;
    this.connected = false;
    this.error = null;
    this.controller = null;
    this.needle = "";
    this.matches = [];
    this.current = -1;
    this.generation = (this.generation || 0) + 1;
  }

  open(processId) {
    this.close();
    this.reset();
    this.processId = processId;
    this.userMode = null;
    this.followBox.checked = true;
    this.pauseButton.setAttribute("aria-pressed", "false");
    this.pauseButton.textContent = "Pause";
    this.talk.replaceChildren();
    this.view.scrollTop = 0;
    this.setMode("raw", false);
    this.search(this.searchBox.value);
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

  // ---- data --------------------------------------------------------------------------------

  enabled(stream) {
    const box = $(`log-show-${stream}`);
    return box ? box.checked : true;
  }

  rowsOf(index) {
    if (!this.cols) return 1;
    const text = stripAnsi(this.texts[index]);
    const tabs = text.split("\t").length - 1; // tab-size is 4 in style.css
    const length = text.length + tabs * 3;
    return Math.max(1, Math.ceil(length / this.cols));
  }

  ingest(batch, generation) {
    if (generation !== this.generation) return;
    let added = 0;
    const fresh = [];
    for (const item of batch) {
      if (item.type === "log") {
        if (item.seq <= this.lastSeq) continue; // seen already: a resume never duplicates
        const index = this.seqs.length;
        this.seqs.push(item.seq);
        this.streams.push(item.stream);
        this.texts.push(item.text);
        this.events.push(item.event || null);
        if (item.event) this.seenEvents = true;
        this.lastSeq = item.seq;
        if (this.enabled(item.stream)) {
          this.shown.push(index);
          this.cum.push(this.cum[this.cum.length - 1] + this.rowsOf(index));
          if (this.needle && stripAnsi(item.text).toLowerCase().includes(this.needle)) this.matches.push(this.shown.length - 1);
        }
        fresh.push(index);
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
      for (const list of [this.seqs, this.streams, this.texts, this.events]) list.splice(0, drop);
      this.rebuild();
    }
    if (this.seenEvents && this.mode === "raw" && this.userMode === null) this.setMode("talk", false);
    else if (this.mode === "talk") this.appendEntries(fresh);
    this.modeButton.hidden = !this.seenEvents;
    if (added || this.ended) this.schedule();
    if (added && this.needle) this.updateSearchCount();
  }

  /** Recompute what is shown after the filter, the width or the kept lines changed. */
  rebuild() {
    this.shown = [];
    this.cum = [0];
    for (let i = 0; i < this.texts.length; i += 1) {
      if (!this.enabled(this.streams[i])) continue;
      this.shown.push(i);
      this.cum.push(this.cum[this.cum.length - 1] + this.rowsOf(i));
    }
    this.findMatches();
    if (this.mode === "talk") this.renderTalk();
    this.schedule();
  }

  refilter() {
    this.rebuild();
  }

  measure() {
    // Characters per row: the text column's width over one character of the log font.
    const probe = $("logprobe");
    const charWidth = probe ? probe.getBoundingClientRect().width / 100 : 7.8;
    const gutter = parseFloat(getComputedStyle(this.view).getPropertyValue("--gutter")) || 64;
    const width = this.view.clientWidth - gutter - 12;
    const cols = Math.max(20, Math.floor(width / (charWidth || 7.8)));
    if (cols !== this.cols) {
      this.cols = cols;
      this.rebuild();
    } else {
      this.schedule();
    }
  }

  // ---- modes ---------------------------------------------------------------------------------

  setMode(mode, byUser) {
    if (byUser) this.userMode = mode;
    this.mode = mode;
    const talk = mode === "talk";
    this.view.hidden = talk;
    this.talk.hidden = !talk;
    this.modeButton.textContent = talk ? "Raw lines" : "Conversation";
    this.modeButton.setAttribute("aria-pressed", String(!talk));
    this.modeButton.hidden = !this.seenEvents;
    if (talk) this.renderTalk();
    this.findMatches();
    this.schedule();
  }

  renderTalk() {
    this.talk.replaceChildren();
    this.talkIndex = [];
    this.appendEntries(this.shown);
  }

  appendEntries(indices) {
    const frag = document.createDocumentFragment();
    let seen = this.seenEvents;
    for (const i of indices) {
      if (!this.enabled(this.streams[i])) continue;
      seen = seen || Boolean(this.events[i]);
      for (const node of lineEntries(this.streams[i], this.texts[i], this.events[i], seen)) {
        node.dataset.seq = String(this.seqs[i]);
        frag.append(node);
        this.talkIndex.push(i);
      }
    }
    this.talk.append(frag);
    while (this.talk.childElementCount > MAX_ENTRIES) {
      this.talk.firstElementChild.remove();
      this.talkIndex.shift();
    }
    if (this.needle) this.findMatches();
    if (this.followBox.checked) this.talk.scrollTop = this.talk.scrollHeight;
  }

  // ---- search --------------------------------------------------------------------------------

  search(text) {
    this.needle = text.trim().toLowerCase();
    this.findMatches();
    if (this.matches.length) this.step(0);
    else this.schedule();
  }

  findMatches() {
    this.matches = [];
    this.current = -1;
    if (this.needle) {
      if (this.mode === "talk") {
        [...this.talk.children].forEach((node, k) => {
          node.classList.remove("match", "current");
          if (node.textContent.toLowerCase().includes(this.needle)) {
            node.classList.add("match");
            this.matches.push(k);
          }
        });
      } else {
        for (let k = 0; k < this.shown.length; k += 1) {
          if (stripAnsi(this.texts[this.shown[k]]).toLowerCase().includes(this.needle)) this.matches.push(k);
        }
      }
    } else if (this.mode === "talk") {
      for (const node of this.talk.querySelectorAll(".match")) node.classList.remove("match", "current");
    }
    this.updateSearchCount();
  }

  /** Go to the next (1), previous (-1) or nearest (0) match and scroll it into view. */
  step(direction) {
    if (!this.matches.length) return;
    const n = this.matches.length;
    this.current = this.current < 0 ? (direction < 0 ? n - 1 : 0) : (this.current + direction + n) % n;
    this.followBox.checked = false;
    const k = this.matches[this.current];
    if (this.mode === "talk") {
      for (const node of this.talk.querySelectorAll(".current")) node.classList.remove("current");
      const node = this.talk.children[k];
      if (node) {
        node.classList.add("current");
        for (const details of node.querySelectorAll("details")) details.open = true;
        node.scrollIntoView({ block: "center" });
      }
    } else {
      this.view.scrollTop = Math.max(0, this.cum[k] * ROW - this.view.clientHeight / 3);
      this.schedule();
    }
    this.updateSearchCount();
  }

  updateSearchCount() {
    if (!this.needle) setText(this.searchCount, "");
    else if (!this.matches.length) setText(this.searchCount, "no match");
    else setText(this.searchCount, `${this.current < 0 ? "–" : this.current + 1} of ${this.matches.length}`);
  }

  // ---- scrolling and rendering ----------------------------------------------------------------

  active() {
    return this.mode === "talk" ? this.talk : this.view;
  }

  atEnd(el = this.active()) {
    return el.scrollTop + el.clientHeight >= el.scrollHeight - ROW;
  }

  scrollToEnd() {
    const el = this.active();
    el.scrollTop = el.scrollHeight;
    this.schedule();
  }

  onScroll(el) {
    // Scrolling up stops following; scrolling back to the end starts it again.
    if (el === this.active() && (this.dragging || performance.now() - this.userIntent < 500)) this.followBox.checked = this.atEnd(el);
    if (el === this.view) this.schedule();
  }

  onKey(event, el) {
    const keys = { Home: -Infinity, End: Infinity };
    if (event.key in keys) {
      event.preventDefault();
      el.scrollTop = keys[event.key] < 0 ? 0 : el.scrollHeight;
    }
  }

  schedule() {
    if (this.frame) return;
    this.frame = requestAnimationFrame(() => {
      this.frame = 0;
      this.render();
    });
  }

  /** The first shown line whose rows reach below `row` (binary search over cum). */
  lineAt(row) {
    let lo = 0;
    let hi = this.shown.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (this.cum[mid + 1] <= row) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }

  render() {
    if (this.mode === "talk") {
      if (this.followBox.checked) this.talk.scrollTop = this.talk.scrollHeight;
      this.updateStatus();
      return;
    }
    const total = this.shown.length;
    const height = this.cum[total] * ROW;
    if (this.spacer.style.height !== `${height}px`) this.spacer.style.height = `${height}px`;
    if (this.followBox.checked) this.view.scrollTop = this.view.scrollHeight;
    const top = this.view.scrollTop;
    const visibleRows = Math.ceil((this.view.clientHeight || 400) / ROW);
    const firstVisible = this.lineAt(Math.floor(top / ROW));
    const first = Math.max(0, firstVisible - OVERSCAN);
    const last = Math.min(total, this.lineAt(Math.floor(top / ROW) + visibleRows) + 1 + OVERSCAN);
    this.rows.style.transform = `translateY(${this.cum[first] * ROW}px)`;
    const want = last - first;
    while (this.rows.childElementCount < want) {
      const row = document.createElement("div");
      row.className = "logline";
      const seq = document.createElement("span");
      seq.className = "seq";
      seq.setAttribute("aria-hidden", "true");
      const text = document.createElement("span");
      text.className = "text";
      row.append(seq, text);
      this.rows.append(row);
    }
    while (this.rows.childElementCount > want) this.rows.lastElementChild.remove();
    const current = this.current >= 0 ? this.matches[this.current] : -1;
    let row = this.rows.firstElementChild;
    for (let k = first; k < last; k += 1, row = row.nextElementSibling) {
      const i = this.shown[k];
      const stream = this.streams[i];
      const hit = this.needle && stripAnsi(this.texts[i]).toLowerCase().includes(this.needle);
      const cls = `logline${stream === "stdout" ? "" : ` ${stream}`}${hit ? " match" : ""}${k === current ? " current" : ""}`;
      if (row.className !== cls) row.className = cls;
      const rows = this.cum[k + 1] - this.cum[k];
      const h = `${rows * ROW}px`;
      if (row.style.height !== h) row.style.height = h;
      const key = `${this.seqs[i]}|${hit ? this.needle : ""}`;
      if (row.dataset.key !== key) {
        row.dataset.key = key;
        row.dataset.seq = String(this.seqs[i]);
        row.firstChild.textContent = String(this.seqs[i]);
        const text = row.lastChild;
        text.replaceChildren();
        appendAnsi(text, this.texts[i], hit ? this.needle : "");
      }
    }
    this.updateStatus();
  }

  updateStatus() {
    const parts = [`${this.seqs.length.toLocaleString()} lines`];
    if (this.shown.length !== this.seqs.length) parts.push(`${this.shown.length.toLocaleString()} shown`);
    if (this.lastSeq) parts.push(`last seq ${this.lastSeq}`);
    if (this.paused) parts.push("paused");
    else if (this.ended) parts.push("ended");
    else if (this.error) parts.push(`reconnecting (${this.error})`);
    else if (this.connected) parts.push("live");
    setText(this.status, parts.join(" · "));
    this.status.dataset.state = this.paused ? "paused" : this.ended ? "ended" : this.connected ? "live" : "idle";
  }
}
