// The live socket (`/api/v1/ws`): task events as they happen, reconnection with backoff.
//
// Events dispatched:
//   "message"  detail: a task.* or project.* envelope, or a task.access_lost /
//              project.access_lost notice
//   "status"   detail: {state: "connecting" | "open" | "down", reconnected: bool, resync: bool}
//   "auth"     the server refused the token (close 1008): refresh it, then call reconnect()

const HEARTBEAT_TIMEOUT_MS = 50_000; // the server sends a heartbeat every 20 s
const MAX_BACKOFF_MS = 30_000;
const AUTH_TIMEOUT_MS = 10_000;

export class LiveConnection extends EventTarget {
  constructor(tokenProvider) {
    super();
    this.tokenProvider = tokenProvider;
    this.socket = null;
    this.attempt = 0;
    this.everOpened = false;
    this.wasDown = false;
    this.gap = false;
    this.state = "idle";
    this.retryTimer = null;
    this.watchdog = null;
    this.stopped = true;
    this.online = () => this.reconnect();
    window.addEventListener("online", this.online);
  }

  start() {
    this.stopped = false;
    this.#connect();
  }

  stop() {
    this.stopped = true;
    clearTimeout(this.retryTimer);
    clearTimeout(this.watchdog);
    window.removeEventListener("online", this.online);
    if (this.socket) {
      const socket = this.socket;
      this.socket = null;
      socket.close(1000, "signed out");
    }
    this.#setState("idle");
  }

  /** Reconnect now (after a token refresh, or when the browser is back online). */
  reconnect() {
    if (this.stopped) return;
    clearTimeout(this.retryTimer);
    if (this.socket) {
      const socket = this.socket;
      this.socket = null;
      socket.close(1000, "reconnecting");
    }
    this.#connect();
  }

  #setState(state) {
    // reconnected: the banner says so; resync: events may have been missed, re-read.
    const reconnected = state === "open" && this.wasDown;
    const resync = state === "open" && (this.wasDown || this.gap);
    if (state === "open") {
      this.wasDown = false;
      this.gap = false;
    }
    if (state === "down") this.wasDown = this.everOpened || this.wasDown;
    this.state = state;
    this.dispatchEvent(new CustomEvent("status", { detail: { state, reconnected, resync } }));
  }

  #connect() {
    const token = this.tokenProvider();
    if (!token || this.stopped) return;
    this.lastToken = token;
    const scheme = location.protocol === "https:" ? "wss" : "ws";
    let socket;
    try {
      socket = new WebSocket(`${scheme}://${location.host}/api/v1/ws`);
    } catch {
      this.#retry();
      return;
    }
    this.socket = socket;
    if (this.state !== "down") this.#setState("connecting");
    let authenticated = false;
    const authTimer = setTimeout(() => socket.close(4000, "no ready"), AUTH_TIMEOUT_MS + 2000);

    socket.addEventListener("open", () => {
      // The token goes in the first message, not the URL: URLs end up in access logs.
      socket.send(JSON.stringify({ token }));
    });
    socket.addEventListener("message", (event) => {
      if (socket !== this.socket) return;
      this.#feed(socket);
      let message;
      try {
        message = JSON.parse(event.data);
      } catch {
        return;
      }
      if (message.type === "ready") {
        authenticated = true;
        clearTimeout(authTimer);
        this.attempt = 0;
        this.everOpened = true;
        this.#setState("open");
      } else if (message.type === "heartbeat" || message.type === "pong") {
        // the watchdog was fed above
      } else if (typeof message.type === "string" && (message.type.startsWith("task.") || message.type.startsWith("project."))) {
        this.dispatchEvent(new CustomEvent("message", { detail: message }));
      }
    });
    socket.addEventListener("close", (event) => {
      clearTimeout(authTimer);
      clearTimeout(this.watchdog);
      if (socket !== this.socket) return;
      this.socket = null;
      if (this.stopped) return;
      if (event.code === 1008) {
        // Token refused: expired, revoked or invalid. The app refreshes and reconnects; an
        // expiry is routine, so no banner, but a re-read once the socket is back.
        this.gap = this.gap || authenticated;
        this.dispatchEvent(new CustomEvent("auth", { detail: event.reason }));
        this.#retry();
        return;
      }
      this.#setState("down");
      this.#retry(event.code === 1013 || event.code === 1001);
    });
  }

  #feed(socket) {
    clearTimeout(this.watchdog);
    this.watchdog = setTimeout(() => {
      if (socket === this.socket) socket.close(4001, "heartbeat missed");
    }, HEARTBEAT_TIMEOUT_MS);
  }

  #retry(soon = false) {
    if (this.stopped) return;
    clearTimeout(this.retryTimer);
    const base = soon ? 250 : Math.min(MAX_BACKOFF_MS, 1000 * 2 ** this.attempt);
    this.attempt += 1;
    const delay = base / 2 + Math.random() * (base / 2);
    this.retryTimer = setTimeout(() => this.#connect(), delay);
  }
}
