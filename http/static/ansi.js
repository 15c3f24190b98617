// ANSI colour codes as styled text. A log line's text only ever becomes text nodes inside
// spans whose class (16 colours, bold, dim, italic, underline) or CSSOM colour (256 colours,
// truecolor) comes from the SGR codes; nothing from a log is ever parsed as HTML. Escape
// sequences other than SGR (cursor moves, OSC titles) are dropped.

// CSI sequences (ESC [ params final), OSC (ESC ] ... BEL or ESC \), and lone two-byte escapes.
const ESCAPES = /\x1b\[([0-9;:?]*)([@-~])|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)|\x1b[@-Z\\-_]/g;

const PALETTE_256 = (() => {
  const base = ["#000000", "#cd3131", "#0dbc79", "#e5e510", "#2472c8", "#bc3fbc", "#11a8cd", "#e5e5e5",
    "#666666", "#f14c4c", "#23d18b", "#f5f543", "#3b8eea", "#d670d6", "#29b8db", "#ffffff"];
  const out = [...base];
  const steps = [0, 95, 135, 175, 215, 255];
  for (let r = 0; r < 6; r += 1) for (let g = 0; g < 6; g += 1) for (let b = 0; b < 6; b += 1) {
    out.push(`rgb(${steps[r]}, ${steps[g]}, ${steps[b]})`);
  }
  for (let i = 0; i < 24; i += 1) {
    const v = 8 + i * 10;
    out.push(`rgb(${v}, ${v}, ${v})`);
  }
  return out;
})();

export function hasAnsi(text) {
  return text.includes("\x1b");
}

export function stripAnsi(text) {
  return hasAnsi(text) ? text.replace(ESCAPES, "") : text;
}

function colour(codes, i) {
  // 38;5;n or 38;2;r;g;b (and the same for 48): returns [css colour or null, codes consumed]
  if (codes[i + 1] === 5 && codes.length > i + 2) return [PALETTE_256[codes[i + 2]] || null, 2];
  if (codes[i + 1] === 2 && codes.length > i + 4) {
    const [r, g, b] = codes.slice(i + 2, i + 5).map((v) => Math.max(0, Math.min(255, v | 0)));
    return [`rgb(${r}, ${g}, ${b})`, 4];
  }
  return [null, 0];
}

function apply(state, params) {
  const codes = params === "" ? [0] : params.split(/[;:]/).map((p) => (p === "" ? 0 : Number(p)));
  for (let i = 0; i < codes.length; i += 1) {
    const c = codes[i];
    if (c === 0) Object.assign(state, { fg: null, bg: null, fgCss: null, bgCss: null, bold: false, dim: false, italic: false, underline: false, inverse: false });
    else if (c === 1) state.bold = true;
    else if (c === 2) state.dim = true;
    else if (c === 3) state.italic = true;
    else if (c === 4) state.underline = true;
    else if (c === 7) state.inverse = true;
    else if (c === 22) state.bold = state.dim = false;
    else if (c === 23) state.italic = false;
    else if (c === 24) state.underline = false;
    else if (c === 27) state.inverse = false;
    else if (c >= 30 && c <= 37) Object.assign(state, { fg: c - 30, fgCss: null });
    else if (c >= 90 && c <= 97) Object.assign(state, { fg: c - 90 + 8, fgCss: null });
    else if (c === 39) Object.assign(state, { fg: null, fgCss: null });
    else if (c >= 40 && c <= 47) Object.assign(state, { bg: c - 40, bgCss: null });
    else if (c >= 100 && c <= 107) Object.assign(state, { bg: c - 100 + 8, bgCss: null });
    else if (c === 49) Object.assign(state, { bg: null, bgCss: null });
    else if (c === 38 || c === 48) {
      const [css, used] = colour(codes, i);
      if (c === 38) Object.assign(state, { fg: null, fgCss: css });
      else Object.assign(state, { bg: null, bgCss: css });
      i += used;
    }
  }
}

/** [{text, state}] runs of one line; the state is a snapshot of the SGR attributes. */
export function ansiRuns(text) {
  if (!hasAnsi(text)) return [{ text, state: null }];
  const runs = [];
  const state = { fg: null, bg: null, fgCss: null, bgCss: null, bold: false, dim: false, italic: false, underline: false, inverse: false };
  let last = 0;
  ESCAPES.lastIndex = 0;
  for (let m = ESCAPES.exec(text); m; m = ESCAPES.exec(text)) {
    if (m.index > last) runs.push({ text: text.slice(last, m.index), state: { ...state } });
    if (m[2] === "m") apply(state, m[1]);
    last = ESCAPES.lastIndex;
  }
  if (last < text.length) runs.push({ text: text.slice(last), state: { ...state } });
  return runs;
}

function styled(run) {
  const s = run.state;
  if (!s) return null;
  const classes = [];
  const fg = s.inverse ? s.bg : s.fg;
  const bg = s.inverse ? s.fg : s.bg;
  if (fg !== null) classes.push(`ansi-fg-${fg}`);
  if (bg !== null) classes.push(`ansi-bg-${bg}`);
  if (s.bold) classes.push("ansi-bold");
  if (s.dim) classes.push("ansi-dim");
  if (s.italic) classes.push("ansi-italic");
  if (s.underline) classes.push("ansi-underline");
  if (!classes.length && !s.fgCss && !s.bgCss) return null;
  const span = document.createElement("span");
  span.className = classes.join(" ");
  // CSSOM, not a style attribute: allowed under the page's CSP (style-src 'self').
  if (s.fgCss) span.style.color = s.fgCss;
  if (s.bgCss) span.style.backgroundColor = s.bgCss;
  return span;
}

/** Append `text` to `parent` as styled text; occurrences of `needle` (lower case) get <mark>. */
export function appendAnsi(parent, text, needle = "") {
  for (const run of ansiRuns(text)) {
    const host = styled(run) || parent;
    appendMarked(host, run.text, needle);
    if (host !== parent) parent.append(host);
  }
}

export function appendMarked(parent, text, needle) {
  if (!needle) {
    parent.append(document.createTextNode(text));
    return;
  }
  const lower = text.toLowerCase();
  let at = 0;
  for (let i = lower.indexOf(needle); i >= 0; i = lower.indexOf(needle, i + needle.length)) {
    if (i > at) parent.append(document.createTextNode(text.slice(at, i)));
    const mark = document.createElement("mark");
    mark.textContent = text.slice(i, i + needle.length);
    parent.append(mark);
    at = i + needle.length;
  }
  if (at < text.length) parent.append(document.createTextNode(text.slice(at)));
}
