// The public API client: one signed-in session, silent token refresh, problem+json errors.
//
// The session is the server's cookie session (docs/security.md): the refresh token lives in an
// HttpOnly cookie that scripts cannot read, and the access token only in this page's memory,
// never in localStorage or sessionStorage. A reload (or a second tab) asks the server for a
// fresh access token with that cookie. Refresh tokens rotate and a reused one revokes its
// whole family, so tabs refresh under one Web Lock: each tab waits for the previous rotation's
// cookie before sending its own refresh. Tabs tell each other about sign-in and sign-out over a
// BroadcastChannel (messages carry no token).

const API = "/api/v1";
const LOCK_NAME = "taskflow.refresh";
const CHANNEL_NAME = "taskflow.session";
// The cookie routes refuse requests without it: another site's page cannot send it without a
// CORS preflight the gateway does not grant.
const SESSION_HEADERS = { "X-Requested-With": "TaskFlow" };
// Refresh this long before the access token expires (or at 80% of a short lifetime).
const REFRESH_MARGIN_MS = 60_000;

export class ApiError extends Error {
  constructor(status, body, fallback) {
    super(problemMessage(status, body, fallback));
    this.name = "ApiError";
    this.status = status;
    this.body = body || {};
  }
}

/** A sentence for a person from a problem+json body (with its validation errors). */
export function problemMessage(status, body, fallback) {
  if (status === 0) return "TaskFlow can't be reached. Check your connection and try again.";
  const detail = body && typeof body.detail === "string" ? body.detail.trim() : "";
  const errors = body && Array.isArray(body.errors) ? body.errors : [];
  const fields = errors
    .map((error) => {
      const loc = (error.loc || []).filter((part) => part !== "body" && part !== "query");
      const field = loc.length ? String(loc[loc.length - 1]).replaceAll("_", " ") : "";
      const msg = String(error.msg || "").replace(/^Value error, /, "");
      return field ? `${capitalise(field)}: ${msg}` : msg;
    })
    .filter(Boolean);
  if (fields.length && (!detail || detail.startsWith("The request is not valid"))) {
    return fields.join(". ");
  }
  if (detail) return fields.length ? `${detail} (${fields.join("; ")})` : detail;
  if (status === 429) return "Too many requests. Wait a moment and try again.";
  if (status >= 500) return "Something went wrong on our side. Please try again in a moment.";
  return fallback || `The request failed (${status}).`;
}

function capitalise(text) {
  return text.charAt(0).toUpperCase() + text.slice(1);
}

async function readBody(response) {
  if (response.status === 204) return null;
  const type = response.headers.get("content-type") || "";
  if (type.includes("json")) {
    try {
      return await response.json();
    } catch {
      return null;
    }
  }
  return null;
}

async function send(method, path, { body, headers = {}, token, keepalive = false, signal } = {}) {
  const init = { method, headers: { Accept: "application/json", ...headers }, keepalive, signal };
  if (token) init.headers.Authorization = `Bearer ${token}`;
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  let response;
  try {
    response = await fetch(API + path, init);
  } catch (error) {
    if (error.name === "AbortError") throw error;
    throw new ApiError(0, null);
  }
  const data = await readBody(response);
  return { response, data };
}

function tokensFrom(session) {
  const lifetime = Math.max(1, Number(session.expires_in) || 900) * 1000;
  return {
    access: session.access_token,
    issuedAt: Date.now(),
    expiresAt: Date.now() + lifetime,
  };
}

function refreshDue(tokens) {
  const lifetime = tokens.expiresAt - tokens.issuedAt;
  const margin = Math.min(REFRESH_MARGIN_MS, lifetime * 0.2);
  return tokens.expiresAt - margin;
}

/**
 * The signed-in session. Events: "change" (signed in / out / refreshed), "ended"
 * (detail: a message for the sign-in screen, when the server ended the session).
 */
export class Session extends EventTarget {
  constructor() {
    super();
    this.tokens = null;
    this.timer = null;
    this.refreshing = null;
    this.channel = "BroadcastChannel" in window ? new BroadcastChannel(CHANNEL_NAME) : null;
    if (this.channel) {
      this.channel.onmessage = (event) => {
        if (event.data === "signed-out" && this.tokens) {
          this.#clear();
          this.dispatchEvent(new CustomEvent("ended", { detail: "You signed out in another tab." }));
        } else if (event.data === "signed-in" && !this.tokens) {
          this.resume().then((resumed) => {
            if (resumed) this.dispatchEvent(new Event("change"));
          });
        }
      };
    }
  }

  get signedIn() {
    return Boolean(this.tokens);
  }

  get accessToken() {
    return this.tokens ? this.tokens.access : null;
  }

  #store(tokens) {
    this.tokens = tokens;
    this.#schedule();
  }

  #clear() {
    this.tokens = null;
    clearTimeout(this.timer);
  }

  #tell(message) {
    if (this.channel) this.channel.postMessage(message);
  }

  #schedule() {
    clearTimeout(this.timer);
    if (!this.tokens) return;
    const wait = Math.max(1000, refreshDue(this.tokens) - Date.now());
    this.timer = setTimeout(() => {
      this.refresh().catch(() => {});
    }, Math.min(wait, 2 ** 31 - 1));
  }

  /**
   * On page load: an access token from the session cookie, if there is a live session.
   * Resolves true when signed in. Offline, it resolves false (the sign-in screen says so).
   */
  async resume() {
    const run = () => this.#refreshNow({ quiet: true });
    const resumed = navigator.locks ? navigator.locks.request(LOCK_NAME, run) : run();
    return resumed;
  }

  async #openSession(username, password) {
    const { response, data } = await send("POST", "/auth/session", {
      body: { username, password },
      headers: SESSION_HEADERS,
    });
    if (!response.ok) throw new ApiError(response.status, data, "Signing in failed.");
    this.#store(tokensFrom(data));
  }

  async signIn(username, password) {
    await this.#openSession(username, password);
    this.#tell("signed-in");
    this.dispatchEvent(new Event("change"));
  }

  async signUp({ username, email, password, full_name }) {
    const body = { username, email, password };
    if (full_name) body.full_name = full_name;
    const { response, data } = await send("POST", "/auth/register", { body });
    if (!response.ok) throw new ApiError(response.status, data, "Creating the account failed.");
    await this.signIn(username, password);
  }

  /** Sign out: the server ends the session and removes the cookie; always local. */
  async signOut() {
    const wasSignedIn = Boolean(this.tokens);
    this.#clear();
    this.dispatchEvent(new Event("change"));
    if (wasSignedIn) {
      await send("DELETE", "/auth/session", { headers: SESSION_HEADERS }).catch(() => {});
      this.#tell("signed-out");
    }
  }

  /**
   * Change the password, then sign in again with the new one: the change ends every session,
   * this one too. Until the new tokens are in, a refresh elsewhere in the app (a request or
   * the live socket refused with the old token) waits for them instead of failing.
   */
  async changePassword(username, currentPassword, newPassword) {
    let settle;
    const gate = new Promise((resolve) => {
      settle = resolve;
    });
    this.refreshing = gate.finally(() => {
      this.refreshing = null;
    });
    const body = { current_password: currentPassword, new_password: newPassword };
    let result;
    try {
      result = await send("POST", "/users/me/password", { body, token: this.accessToken });
    } catch (error) {
      settle(true);
      throw error;
    }
    if (!result.response.ok) {
      settle(true);
      throw new ApiError(result.response.status, result.data);
    }
    try {
      await this.#openSession(username, newPassword);
      settle(true);
    } catch (error) {
      settle(false);
      this.end("Your password was changed. Please sign in with the new one.");
      throw error;
    }
  }

  /** The server ended the session (revoked, deleted, password changed elsewhere). */
  end(message) {
    if (!this.tokens) return;
    this.#clear();
    this.#tell("signed-out");
    this.dispatchEvent(new CustomEvent("ended", { detail: message }));
  }

  /**
   * A new access token from the session cookie. One refresh at a time across tabs (each
   * rotation replaces the cookie the next one sends). Resolves true when the session is usable.
   */
  refresh() {
    if (!this.tokens) return Promise.resolve(false);
    if (!this.refreshing) {
      const run = () => this.#refreshNow({ quiet: false });
      const locked = navigator.locks ? navigator.locks.request(LOCK_NAME, run) : run();
      this.refreshing = locked.finally(() => {
        this.refreshing = null;
      });
    }
    return this.refreshing;
  }

  /** `quiet`: resuming on page load, where no session yet is not an ending worth a message. */
  async #refreshNow({ quiet }) {
    let result;
    try {
      result = await send("POST", "/auth/session/refresh", { headers: SESSION_HEADERS });
    } catch {
      if (quiet) return false;
      this.timer = setTimeout(() => this.refresh().catch(() => {}), 5000);
      return false; // offline: keep the session, try again shortly
    }
    if (result.response.ok) {
      this.#store(tokensFrom(result.data));
      if (!quiet) this.dispatchEvent(new Event("refreshed"));
      return true;
    }
    if (quiet) return false;
    if (result.response.status === 401 || result.response.status === 403) {
      this.end("Your session has ended — it was signed out or revoked. Please sign in again.");
      return false;
    }
    this.timer = setTimeout(() => this.refresh().catch(() => {}), 10_000);
    return false;
  }

  /**
   * An authenticated API call. Returns `{data, response}`; throws ApiError for any non-2xx
   * answer. A 401 triggers one refresh and one retry; if that fails the session ends.
   */
  async request(method, path, options = {}) {
    if (!this.tokens) throw new ApiError(401, { detail: "Please sign in." });
    if (refreshDue(this.tokens) <= Date.now()) await this.refresh();
    let result = await send(method, path, { ...options, token: this.accessToken });
    if (result.response.status === 401 && this.tokens) {
      const usable = await this.refresh();
      if (!usable) throw new ApiError(401, result.data);
      result = await send(method, path, { ...options, token: this.accessToken });
      if (result.response.status === 401) {
        this.end("Your session has ended — it was signed out or revoked. Please sign in again.");
      }
    }
    if (!result.response.ok) throw new ApiError(result.response.status, result.data);
    return result;
  }

  async get(path, options) {
    return (await this.request("GET", path, options)).data;
  }

  /** A request that must outlive the page (sent on `pagehide`, e.g. a pending delete). */
  sendBeacon(method, path) {
    if (!this.tokens) return;
    send(method, path, { token: this.accessToken, keepalive: true }).catch(() => {});
  }
}

/** `{a: 1, b: [2, 3]}` → `?a=1&b=2&b=3` (empty values left out). */
export function query(params) {
  const search = new URLSearchParams();
  for (const [key, value] of Object.entries(params)) {
    if (value === undefined || value === null || value === "") continue;
    for (const item of Array.isArray(value) ? value : [value]) search.append(key, String(item));
  }
  const text = search.toString();
  return text ? `?${text}` : "";
}
