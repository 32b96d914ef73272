// Talking to the server: REST calls, and Socket.IO requests that wait for their ack.

// What each protocol error code means, in words a user can act on. The server's own message follows.
const WORDS = {
  invalid_payload: "The server refused the request as malformed",
  too_large: "That is too large",
  rate_limited: "Too many requests — slow down",
  insufficient_credits: "Not enough credits",
  blocked: "Blocked — one of you has blocked the other",
  not_found: "Not found",
  forbidden: "Not allowed",
  conflict: "That changed meanwhile — try again",
  busy: "Busy",
  unavailable: "The server cannot reach its storage right now — retry in a moment",
  internal: "The server failed",
  timeout: "No answer from the server",
  auth_missing: "No token was sent",
  auth_invalid: "The token was refused",
  auth_expired: "The token has expired — sign in again",
  auth_revoked: "This session was revoked",
  banned: "This account is banned",
  limit_reached: "Too many connections for this user",
};

export class RequestError extends Error {
  constructor(code, message, extra = {}) {
    super(message);
    this.code = code;
    this.extra = extra;
  }
  get words() {
    const retry = this.extra.retry_after_ms ? ` (retry in ${Math.ceil(this.extra.retry_after_ms / 1000)} s)` : "";
    return `${WORDS[this.code] || this.code}: ${this.message}${retry}`;
  }
}

// Every client event takes an ack `{ok: true, ...}` or `{ok: false, error: {code, message}}`.
// `timeout()` makes the promise fail when no ack comes (lost connection): the request may or may not
// have been applied, which is why message:send carries a client_id the server de-duplicates on.
export async function request(socket, event, payload, timeoutMs = 10000) {
  let ack;
  try {
    ack = await socket.timeout(timeoutMs).emitWithAck(event, payload);
  } catch {
    throw new RequestError("timeout", `${event} got no ack within ${timeoutMs / 1000} s`);
  }
  if (!ack || ack.ok !== true) {
    const { code = "internal", message = "no details", ...extra } = (ack && ack.error) || {};
    throw new RequestError(code, message, extra);
  }
  return ack;
}

// REST: errors come as `{"error": {"code", "message"}}` with the matching HTTP status.
export async function rest(method, path, { token, body } = {}) {
  const headers = { Accept: "application/json" };
  if (token) headers.Authorization = `Bearer ${token}`;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  let response;
  try {
    response = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  } catch (err) {
    throw new RequestError("unavailable", `${method} ${path}: ${err.message}`);
  }
  const data = await response.json().catch(() => ({}));
  if (!response.ok) {
    const { code = "internal", message = `HTTP ${response.status}`, ...extra } = data.error || {};
    throw new RequestError(code, message, extra);
  }
  return data;
}

export function newId() {
  return crypto.randomUUID ? crypto.randomUUID() : `${Date.now().toString(36)}-${Math.random().toString(36).slice(2)}`;
}

// The user id a token names (its `sub` claim), for display; the server verifies the token itself.
export function tokenSubject(token) {
  try {
    const part = token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
    const claims = JSON.parse(atob(part + "=".repeat((4 - (part.length % 4)) % 4)));
    return { user: String(claims.sub || ""), name: claims.name || null };
  } catch {
    return null;
  }
}
