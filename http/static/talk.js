// An agent run as a conversation: one entry per parsed event (the gateway parses claude's and
// codex's JSON lines into events and sends them with each log line). Text goes in as text
// nodes only; tool output keeps its colours through ansi.js.

import { appendAnsi, stripAnsi } from "./ansi.js";
import { el } from "./util.js";

const TARGET_KEYS = ["command", "file_path", "path", "pattern", "url", "query", "description", "prompt"];

function oneLine(value, width = 200) {
  const text = (typeof value === "string" ? value : JSON.stringify(value) ?? "").split(/\s+/).join(" ").trim();
  return text.length > width ? `${text.slice(0, width - 1)}…` : text;
}

/** The one thing a person wants to see of a tool call: its command, file or pattern. */
export function toolTarget(input) {
  if (input === null || input === undefined) return "";
  if (typeof input !== "object") return oneLine(input);
  for (const key of TARGET_KEYS) {
    const value = input[key];
    if (typeof value === "string" && value) return oneLine(value);
    if (Array.isArray(value) && value.length && value.every((v) => typeof v === "string")) return oneLine(value.join(" "));
  }
  return oneLine(input);
}

function usageText(usage) {
  if (!usage || typeof usage !== "object") return "";
  const parts = [];
  if (Number.isInteger(usage.input_tokens)) parts.push(`${usage.input_tokens} in`);
  if (Number.isInteger(usage.output_tokens)) parts.push(`${usage.output_tokens} out`);
  if (Number.isInteger(usage.cache_read_input_tokens)) parts.push(`${usage.cache_read_input_tokens} cached`);
  return parts.join(" / ");
}

function entry(kind, ...children) {
  return el("div", { class: `talk talk-${kind}` }, ...children);
}

/** Entry elements for one event (a "multi" event gives several). */
export function eventEntries(event) {
  if (!event || typeof event !== "object") return [];
  switch (event.type) {
    case "multi":
      return (event.events || []).flatMap(eventEntries);
    case "session":
      return [entry("session", `session ${event.sessionId || "?"}${event.model ? ` · ${event.model}` : ""}`)];
    case "text":
      return [entry("text", el("span", { class: "talk-who", text: "assistant" }), el("div", { class: "talk-body", text: String(event.text ?? "") }))];
    case "thinking": {
      const body = String(event.text ?? event.content ?? "");
      return [entry("thinking", el("details", {}, el("summary", { text: `thinking: ${oneLine(body, 120)}` }), el("div", { class: "talk-body", text: body })))];
    }
    case "tool_use":
      return [entry("tool", el("span", { class: "talk-tool-name", text: `→ ${event.name || "tool"}` }), " ", el("code", { class: "talk-target", text: toolTarget(event.input) }))];
    case "tool_result": {
      const output = String(event.output ?? "");
      const lines = stripAnsi(output).split("\n");
      const failed = event.isError || (event.exitCode !== undefined && event.exitCode !== null && event.exitCode !== 0);
      const head = `${failed ? "error" : "result"}${event.exitCode ? ` (exit ${event.exitCode})` : ""}: ${oneLine(lines[0] || "(empty)", 120)}${lines.length > 1 ? ` (+${lines.length - 1} lines)` : ""}`;
      const pre = el("pre", { class: "talk-output" });
      appendAnsi(pre, output);
      const details = el("details", {}, el("summary", { text: head }), pre);
      return [entry(failed ? "result talk-failed" : "result", details)];
    }
    case "result": {
      const facts = [];
      if (event.turns !== null && event.turns !== undefined) facts.push(`${event.turns} turns`);
      if (typeof event.durationMs === "number") facts.push(`${(event.durationMs / 1000).toFixed(1)} s`);
      if (typeof event.costUsd === "number") facts.push(`$${event.costUsd.toFixed(4)}`);
      const usage = usageText(event.usage);
      if (usage) facts.push(usage);
      const tail = facts.length ? ` · ${facts.join(" · ")}` : "";
      return event.ok
        ? [entry("done", `✓ done${tail}`)]
        : [entry("done talk-failed", `✗ failed${tail}: ${event.error || "error"}`)];
    }
    case "error":
      return [entry("error", `error: ${event.message ?? ""}`)];
    default:
      return [entry("other", oneLine(event))];
  }
}

/** Entries for one log line: its parsed event (thinking included), or the plain line (bookkeeping JSON is skipped). */
export function lineEntries(stream, text, event, seenEvents) {
  if (event) return eventEntries(event);
  if (stream === "stdout" && seenEvents && text.startsWith("{") && text.endsWith("}")) return [];
  const line = entry(`line ${stream}`);
  appendAnsi(line, text);
  return [line];
}
