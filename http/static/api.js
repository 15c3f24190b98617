// Talking to the gateway: the session token, JSON calls and NDJSON streams.
//
// The session token lives in sessionStorage (this tab only, gone when the tab closes). Every
// call sends it as X-Desktop-Session-Token; the browser adds Origin to POSTs and
// Sec-Fetch-Site: same-origin to every same-origin request, which the gateway accepts in place
// of Origin. A 401 anywhere means the session is gone: the page shows the sign-in state.

const KEY = "desktop-gateway.session";

// Errors come in ClosedLoop's envelope: {"error": "<message>", "code": "<stable code>", ...}.
export class ApiError extends Error {
  constructor(status, data) {
    super((data && typeof data.error === "string" && data.error) || `HTTP ${status}`);
    this.status = status;
    this.data = data;
    this.code = (data && data.code) || "http_error";
  }
}

export class SessionExpired extends Error {
  constructor() {
    super("session expired");
  }
}

let expiredHandler = () => {};

export function onSessionExpired(fn) {
  expiredHandler = fn;
}

export function sessionToken() {
  try {
    return JSON.parse(sessionStorage.getItem(KEY) || "null")?.token || null;
  } catch {
    return null;
  }
}

export function forgetSession() {
  sessionStorage.removeItem(KEY);
}

function expire() {
  forgetSession();
  expiredHandler();
  return new SessionExpired();
}

/** Trade a one-time challenge for a session; true when it worked. */
export async function exchange(challenge) {
  let response;
  try {
    response = await fetch("/gateway-auth/exchange", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ challengeToken: challenge }),
      cache: "no-store",
      credentials: "omit",
    });
  } catch {
    return false;
  }
  if (!response.ok) return false;
  const body = await response.json().catch(() => null);
  if (!body || !body.sessionToken) return false;
  sessionStorage.setItem(KEY, JSON.stringify({ token: body.sessionToken, expiresAt: body.expiresAt }));
  return true;
}

function headers(extra) {
  const token = sessionToken();
  if (!token) throw expire();
  return { "X-Desktop-Session-Token": token, Accept: "application/json", ...extra };
}

/** A JSON call; resolves to the parsed body, throws ApiError or SessionExpired. */
export async function api(path, { method = "GET", body, signal } = {}) {
  const init = { method, signal, cache: "no-store", credentials: "omit" };
  init.headers = headers(body === undefined ? {} : { "Content-Type": "application/json" });
  if (body !== undefined) init.body = JSON.stringify(body);
  const response = await fetch(path, init);
  if (response.status === 401) throw expire();
  const data = await response.json().catch(() => null);
  if (!response.ok) throw new ApiError(response.status, data);
  return data;
}

/** The public health document (no token needed). */
export async function publicJson(path) {
  const response = await fetch(path, { cache: "no-store", credentials: "omit" });
  const data = await response.json().catch(() => null);
  if (!response.ok) throw new ApiError(response.status, data);
  return data;
}

/**
 * Read an NDJSON stream, calling onBatch(objects) once per network chunk (not per line, so a
 * 100,000-line backlog costs a few hundred callbacks). Resolves when the server ends the
 * stream; rejects on errors; an abort through `signal` resolves quietly.
 */
export async function readNdjson(path, onBatch, { signal, onOpen } = {}) {
  let response;
  try {
    response = await fetch(path, { headers: headers({ Accept: "application/x-ndjson" }), signal, cache: "no-store", credentials: "omit" });
  } catch (err) {
    if (signal && signal.aborted) return;
    throw err;
  }
  if (response.status === 401) throw expire();
  if (!response.ok) {
    const data = await response.json().catch(() => null);
    throw new ApiError(response.status, data);
  }
  if (onOpen) onOpen();
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let rest = "";
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      rest += value;
      const cut = rest.lastIndexOf("\n");
      if (cut < 0) continue;
      const lines = rest.slice(0, cut).split("\n");
      rest = rest.slice(cut + 1);
      const batch = [];
      for (const line of lines) {
        if (!line.trim()) continue;
        try {
          batch.push(JSON.parse(line));
        } catch {
          // not JSON: skip it, a stream never fails on one odd line
        }
      }
      if (batch.length) onBatch(batch);
    }
  } catch (err) {
    if (signal && signal.aborted) return;
    throw err;
  }
}

/** Pull a list out of a response that may be a bare array or {key: [...]}. */
export function listFrom(data, ...keys) {
  if (Array.isArray(data)) return data;
  if (data && typeof data === "object") {
    for (const key of keys) if (Array.isArray(data[key])) return data[key];
  }
  return [];
}
