// One WebSocket connection to /v1/trade-blotter/stream that survives network trouble.
//
// Reconnects use exponential backoff with jitter ("equal jitter": half the ceiling plus a random
// half), so a restarted worker is not hit by every browser at the same instant; a successful
// welcome resets the backoff. A close with 4001 (token rejected or expired) stops retrying: only a
// new token can help. The server pings at the WebSocket level (the browser answers by itself);
// the page also sends `ping` messages and reconnects when nothing arrives for a while, which
// catches a half-open connection that the browser alone would notice only much later.

const BACKOFF_BASE_MS = 500;
const BACKOFF_CAP_MS = 30000;
const PING_EVERY_MS = 15000;
const SILENCE_LIMIT_MS = 45000;
export const CLOSE_UNAUTHORIZED = 4001;
export const CLOSE_RATE_LIMITED = 4029;
export const CLOSE_GOING_AWAY = 1001;

/** The delay before reconnect attempt `attempt` (0-based), in ms. */
export function backoffDelay(attempt, random = Math.random) {
  const ceiling = Math.min(BACKOFF_CAP_MS, BACKOFF_BASE_MS * 2 ** Math.min(attempt, 16));
  return ceiling / 2 + random() * (ceiling / 2);
}

function streamUrl(blotterId, token, tokenInQuery) {
  const url = new URL('/v1/trade-blotter/stream', window.location.href);
  url.protocol = url.protocol === 'https:' ? 'wss:' : 'ws:';
  url.searchParams.set('blotterId', blotterId);
  if (token && tokenInQuery) url.searchParams.set('access_token', token);
  return url.toString();
}

export class BlotterStream {
  /**
   * @param {object} options
   * @param {string} options.blotterId  names this page in the server's logs
   * @param {(message: object) => void} options.onMessage  every server message, parsed
   * @param {(status: object) => void} options.onStatus  {state, attempt?, delayMs?, reason?}
   * @param {(info: object) => void} [options.onClose]  {code, reason, opened}
   */
  constructor({ blotterId, onMessage, onStatus, onClose = () => {} }) {
    this.blotterId = blotterId;
    this.onMessage = onMessage;
    this.onStatus = onStatus;
    this.onClose = onClose;
    this.token = '';
    this.ws = null;
    this.attempt = 0;
    this.retryTimer = null;
    this.pingTimer = null;
    this.lastHeard = 0;
    this.stopped = true;
  }

  get connected() {
    return this.ws !== null && this.ws.readyState === WebSocket.OPEN;
  }

  /** Connect (or reconnect now) with `token` ('' when authentication is off). */
  start(token) {
    this.token = token;
    this.stopped = false;
    this.attempt = 0;
    this.open();
  }

  /** Close and stay closed; `reason` is shown as "Disconnected". */
  stop(reason) {
    this.stopped = true;
    this.clearTimers();
    const ws = this.ws;
    this.ws = null;
    if (ws) {
      this.detach(ws);
      if (ws.readyState === WebSocket.OPEN || ws.readyState === WebSocket.CONNECTING) ws.close(1000, 'client stopped');
    }
    this.onStatus({ state: 'disconnected', reason });
  }

  send(message) {
    if (!this.connected) return false;
    this.ws.send(JSON.stringify(message));
    return true;
  }

  // -- internals ----------------------------------------------------------------------------
  open() {
    this.clearTimers();
    if (this.ws) {
      this.detach(this.ws);
      this.ws.close(1000, 'reconnecting');
      this.ws = null;
    }
    this.onStatus({ state: this.attempt === 0 ? 'connecting' : 'reconnecting', attempt: this.attempt });
    let ws;
    try {
      // A browser cannot set headers on a WebSocket: the token travels as the subprotocol pair
      // ["bearer", token] (kept out of URLs and access logs), or in the query string when it
      // holds characters a subprotocol may not.
      ws = this.token
        ? new WebSocket(streamUrl(this.blotterId, this.token, false), ['bearer', this.token])
        : new WebSocket(streamUrl(this.blotterId, '', false));
    } catch (error) {
      if (!(error instanceof DOMException) || error.name !== 'SyntaxError') throw error;
      ws = new WebSocket(streamUrl(this.blotterId, this.token, true));
    }
    const state = { opened: false };
    ws.onopen = () => {
      state.opened = true;
      this.lastHeard = Date.now();
      this.pingTimer = setInterval(() => this.keepAlive(), PING_EVERY_MS);
    };
    ws.onmessage = (event) => {
      this.lastHeard = Date.now();
      let message;
      try {
        message = JSON.parse(event.data);
      } catch {
        return; // the server sends JSON text only; ignore anything else
      }
      if (message.type === 'welcome') {
        this.attempt = 0;
        this.onStatus({ state: 'connected', ready: message.ready });
      }
      this.onMessage(message);
    };
    ws.onclose = (event) => {
      if (this.ws !== ws) return;
      this.ws = null;
      this.clearTimers();
      this.onClose({ code: event.code, reason: event.reason, opened: state.opened });
      if (this.stopped) return;
      if (event.code === CLOSE_UNAUTHORIZED) {
        this.stop(`unauthorized (${event.reason || 'token rejected or expired'}): enter a valid token`);
        return;
      }
      this.scheduleReconnect(event.code === CLOSE_GOING_AWAY);
    };
    ws.onerror = () => {}; // a close event follows; the browser logs the cause itself
    this.ws = ws;
  }

  scheduleReconnect(soon) {
    const delayMs = soon && this.attempt === 0 ? backoffDelay(0) / 2 : backoffDelay(this.attempt);
    this.attempt += 1;
    this.onStatus({ state: 'reconnecting', attempt: this.attempt, delayMs });
    this.retryTimer = setTimeout(() => this.open(), delayMs);
  }

  keepAlive() {
    if (!this.connected) return;
    if (Date.now() - this.lastHeard > SILENCE_LIMIT_MS) {
      // Nothing (not even a pong) for too long: the connection is dead without knowing it.
      const ws = this.ws;
      this.detach(ws);
      this.ws = null;
      ws.close(4000, 'no answer');
      this.clearTimers();
      this.onClose({ code: 4000, reason: 'no answer from the server', opened: true });
      this.scheduleReconnect(false);
      return;
    }
    this.send({ type: 'ping', id: Date.now() });
  }

  detach(ws) {
    ws.onopen = ws.onmessage = ws.onclose = ws.onerror = null;
  }

  clearTimers() {
    clearTimeout(this.retryTimer);
    clearInterval(this.pingTimer);
    this.retryTimer = null;
    this.pingTimer = null;
  }
}
