// The public API client: one signed-in session, silent token refresh, problem+json errors.
//
// Tokens live in localStorage so a reload (or a second tab) stays signed in. Refresh tokens
// rotate and a reused one revokes its whole family, so tabs refresh under one Web Lock and a
// tab that finds fresh tokens already stored adopts them instead of refreshing again.

const API = "/api/v1";
const STORAGE_KEY = "taskflow.session";
const LOCK_NAME = "taskflow.refresh";
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

function readStored() {
  try {
    const raw = localStorage.getItem(STORAGE_KEY);
    const stored = raw ? JSON.parse(raw) : null;
    return stored && stored.access && stored.refresh ? stored : null;
  } catch {
    return null;
  }
}

function tokensFrom(pair) {
  const lifetime = Math.max(1, Number(pair.expires_in) || 900) * 1000;
  return {
    access: pair.access_token,
    refresh: pair.refresh_token,
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
    this.tokens = readStored();
    this.timer = null;
    this.refreshing = null;
    window.addEventListener("storage", (event) => {
      if (event.key !== STORAGE_KEY) return;
      const stored = readStored();
      if (!stored && this.tokens) {
        this.#clear();
        this.dispatchEvent(new CustomEvent("ended", { detail: "You signed out in another tab." }));
      } else if (stored && (!this.tokens || stored.access !== this.tokens.access)) {
        const wasSignedIn = Boolean(this.tokens);
        this.tokens = stored;
        this.#schedule();
        if (!wasSignedIn) this.dispatchEvent(new Event("change"));
      }
    });
    if (this.tokens) this.#schedule();
  }

  get signedIn() {
    return Boolean(this.tokens);
  }

  get accessToken() {
    return this.tokens ? this.tokens.access : null;
  }

  #store(tokens) {
    this.tokens = tokens;
    localStorage.setItem(STORAGE_KEY, JSON.stringify(tokens));
    this.#schedule();
  }

  #clear() {
    this.tokens = null;
    clearTimeout(this.timer);
    localStorage.removeItem(STORAGE_KEY);
  }

  #schedule() {
    clearTimeout(this.timer);
    if (!this.tokens) return;
    const wait = Math.max(1000, refreshDue(this.tokens) - Date.now());
    this.timer = setTimeout(() => {
      this.refresh().catch(() => {});
    }, Math.min(wait, 2 ** 31 - 1));
  }

  async signIn(username, password) {
    const { response, data } = await send("POST", "/auth/login", { body: { username, password } });
    if (!response.ok) throw new ApiError(response.status, data, "Signing in failed.");
    this.#store(tokensFrom(data));
    this.dispatchEvent(new Event("change"));
  }

  async signUp({ username, email, password, full_name }) {
    const body = { username, email, password };
    if (full_name) body.full_name = full_name;
    const { response, data } = await send("POST", "/auth/register", { body });
    if (!response.ok) throw new ApiError(response.status, data, "Creating the account failed.");
    await this.signIn(username, password);
  }

  /** Sign out: the server forgets the refresh token (and voids the session); always local. */
  async signOut() {
    const tokens = this.tokens;
    this.#clear();
    this.dispatchEvent(new Event("change"));
    if (tokens) {
      await send("POST", "/auth/logout", { body: { refresh_token: tokens.refresh } }).catch(
        () => {},
      );
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
      const login = await send("POST", "/auth/login", {
        body: { username, password: newPassword },
      });
      if (!login.response.ok) throw new ApiError(login.response.status, login.data);
      this.#store(tokensFrom(login.data));
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
    this.dispatchEvent(new CustomEvent("ended", { detail: message }));
  }

  /**
   * New tokens from the refresh token. One refresh at a time across tabs; a tab that finds
   * newer tokens in storage adopts them. Resolves true when the session is usable.
   */
  refresh() {
    if (!this.tokens) return Promise.resolve(false);
    if (!this.refreshing) {
      const stale = this.tokens.access;
      const run = () => this.#refreshNow(stale);
      const locked = navigator.locks ? navigator.locks.request(LOCK_NAME, run) : run();
      this.refreshing = locked.finally(() => {
        this.refreshing = null;
      });
    }
    return this.refreshing;
  }

  async #refreshNow(staleAccess) {
    const stored = readStored();
    if (!stored) {
      this.end("You signed out in another tab.");
      return false;
    }
    if (stored.access !== staleAccess && refreshDue(stored) > Date.now()) {
      this.tokens = stored; // another tab refreshed while we waited for the lock
      this.#schedule();
      return true;
    }
    let result;
    try {
      result = await send("POST", "/auth/refresh", { body: { refresh_token: stored.refresh } });
    } catch {
      this.timer = setTimeout(() => this.refresh().catch(() => {}), 5000);
      return false; // offline: keep the session, try again shortly
    }
    if (result.response.ok) {
      this.#store(tokensFrom(result.data));
      this.dispatchEvent(new Event("refreshed"));
      return true;
    }
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
