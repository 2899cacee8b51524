// The blotter page: tabs per object type, a filter builder and a live grid per subscription.
//
// It is also the reference browser client of the stream (docs/asyncapi.yaml): it subscribes
// with a credit window, grants credits back as rows are applied to the grid, swaps filters
// without a gap (the new subscription is acknowledged before the old one is dropped, so an
// invalid filter leaves the current view running and shows the server's error), resubscribes
// after a reconnect or a SLOW_CONSUMER close, and sends the token to REST as a bearer header and
// to the WebSocket as a subprotocol.

import { el } from './format.js';
import { FilterBuilder } from './filter-builder.js';
import { BlotterGrid } from './grid.js';
import { PositionLots } from './positions.js';
import { BlotterStream } from './stream.js';

const TABS = [
  { type: 'Order', label: 'Orders' },
  { type: 'Execution', label: 'Executions' },
  { type: 'QuoteRequest', label: 'Quote Requests' },
  { type: 'Quote', label: 'Quotes' },
  { type: 'Position', label: 'Positions' },
];
const MAX_WINDOW = 5000; // credits per subscription; the server caps them at limits.maxCredits
const SLOW_CONSUMER_RETRY_MS = 2000;
const TOKEN_STORAGE_KEY = 'blotter.token';

const $ = (id) => document.getElementById(id);

class BlotterPage {
  constructor() {
    this.token = '';
    this.metadata = new Map();
    this.type = null;
    this.grid = null;
    this.lots = new PositionLots((path) => this.fetchApi(path));
    this.trees = new Map(); // object type -> filter builder tree, kept across tab switches
    this.limits = {};
    this.nextId = 1;
    this.active = null; // the subscription whose rows the grid shows
    this.pending = null; // a subscription sent, not yet acknowledged
    this.changeCount = 0;
    this.retryTimer = null;
    this.notice = '';
    this.builder = new FilterBuilder($('filter-builder'), { onChange: () => this.showMessagePreview() });
    this.stream = new BlotterStream({
      blotterId: `web-${Math.random().toString(36).slice(2, 10)}`,
      onMessage: (message) => this.onMessage(message),
      onStatus: (status) => this.showStatus(status),
      onClose: (info) => this.onClose(info),
    });
  }

  async start() {
    this.token = takeToken();
    $('token').value = this.token;
    $('token-form').addEventListener('submit', (event) => {
      event.preventDefault();
      this.useToken($('token').value.trim());
    });
    $('apply-filter').addEventListener('click', () => this.applyFilter());
    $('clear-filter').addEventListener('click', () => {
      this.builder.clear();
      this.applyFilter();
    });
    $('reconnect').addEventListener('click', () => this.stream.start(this.token));
    setInterval(() => this.tickRate(), 1000);
    await this.loadMetadata();
  }

  // -- REST -----------------------------------------------------------------------------------
  fetchApi(path) {
    const headers = { Accept: 'application/json' };
    if (this.token) headers.Authorization = `Bearer ${this.token}`;
    return fetch(path, { headers, cache: 'no-store', credentials: 'omit' });
  }

  async loadMetadata() {
    let response;
    try {
      response = await this.fetchApi('/v1/trade-blotter/metadata');
    } catch (error) {
      this.showError(`Cannot reach the server: ${error.message}`);
      this.stream.stop('the server is unreachable; reload the page to retry');
      return;
    }
    if (response.status === 401) {
      this.showError('The server needs a token: paste one into the Token field '
        + '(or open the page with ?access_token=…).');
      this.stream.stop('no valid token');
      $('token').focus();
      return;
    }
    if (!response.ok) {
      this.showError(`Metadata unavailable: HTTP ${response.status}`);
      return;
    }
    const types = await response.json();
    this.metadata = new Map(types.map((type) => [type.name, type]));
    this.showError('');
    this.renderTabs();
    const fromHash = decodeURIComponent(window.location.hash.slice(1));
    this.selectTab(this.metadata.has(fromHash) ? fromHash : TABS[0].type);
    this.stream.start(this.token);
  }

  useToken(token) {
    this.token = token;
    if (token) sessionStorage.setItem(TOKEN_STORAGE_KEY, token);
    else sessionStorage.removeItem(TOKEN_STORAGE_KEY);
    this.active = this.pending = null;
    if (this.metadata.size === 0) this.loadMetadata();
    else this.stream.start(token);
  }

  // -- tabs -----------------------------------------------------------------------------------
  renderTabs() {
    const tabs = TABS.filter((tab) => this.metadata.has(tab.type)).map((tab) => el('button', {
      type: 'button',
      role: 'tab',
      class: 'tab',
      id: `tab-${tab.type}`,
      'data-type': tab.type,
      'aria-selected': 'false',
      text: tab.label,
      onclick: () => this.selectTab(tab.type),
    }));
    $('tabs').replaceChildren(...tabs);
  }

  selectTab(type) {
    if (type === this.type) return;
    if (this.type) this.trees.set(this.type, this.builder.tree);
    this.type = type;
    for (const tab of $('tabs').children) tab.setAttribute('aria-selected', String(tab.dataset.type === type));
    history.replaceState(null, '', `#${encodeURIComponent(type)}`);
    this.unsubscribe(this.active);
    this.unsubscribe(this.pending);
    this.active = this.pending = null;
    this.lots.detach();
    this.grid?.destroy();
    const typeMeta = this.metadata.get(type);
    const setup = type === 'Position' ? this.lots.gridSetup() : {};
    this.grid = new BlotterGrid($('grid'), typeMeta, {
      ...setup,
      onApplied: (n, changes, sub) => this.onApplied(n, changes, sub),
    });
    if (type === 'Position') this.lots.attach(this.grid);
    this.builder.setType(typeMeta, this.trees.get(type) ?? null);
    this.showRowCount();
    this.showNotice('');
    this.showError('');
    this.subscribe();
  }

  // -- subscriptions --------------------------------------------------------------------------
  applyFilter() {
    this.showError('');
    this.subscribe();
  }

  subscribeMessage(sub) {
    const message = { type: 'subscribe', id: sub.id, objectType: sub.type, credits: sub.granted };
    if (sub.filter) message.filter = sub.filter;
    return message;
  }

  /** Subscribe to the current type (with the builder's filter unless `filter` is given); the
   * current view stays until the server acknowledges the new subscription. */
  subscribe(filter = this.builder.toFilter()) {
    clearTimeout(this.retryTimer);
    if (!this.type) return;
    this.unsubscribe(this.pending);
    const credits = Math.max(1, Math.min(MAX_WINDOW, this.limits.maxCredits ?? MAX_WINDOW));
    const sub = {
      id: `s${this.nextId++}`,
      type: this.type,
      filter,
      window: credits,
      granted: credits,
      received: 0,
      applied: 0,
      snapshotDone: false,
      starved: false,
    };
    this.pending = sub;
    this.showMessagePreview();
    if (this.stream.send(this.subscribeMessage(sub))) this.showFilterState('Applying…');
    else this.showFilterState('Will apply when connected');
  }

  unsubscribe(sub) {
    if (sub) this.stream.send({ type: 'unsubscribe', id: sub.id });
  }

  /** Rows of `sub` were applied to the grid: grant them back when half the window is used. */
  onApplied(n, changes, sub) {
    this.changeCount += changes;
    if (!sub || sub !== this.active || n === 0) return; // a replaced subscription's rows
    sub.applied += n;
    const outstanding = sub.granted - sub.applied;
    if (outstanding <= sub.window / 2) {
      const grant = sub.window - outstanding;
      sub.granted += grant;
      this.stream.send({ type: 'request', id: sub.id, n: grant });
      if (sub.starved) {
        sub.starved = false;
        this.showNotice(`Updates were conflated by the server at ${clock()}: the page fell behind, `
          + 'so rows skipped intermediate versions (each shows its latest).');
      }
    }
    this.showRowCount();
  }

  // -- server messages ------------------------------------------------------------------------
  onMessage(message) {
    switch (message.type) {
      case 'welcome':
        this.limits = message.limits ?? {};
        if (!message.ready) {
          this.showNotice('The worker is still loading its view; the snapshot follows when it is ready.');
        }
        this.resubscribe();
        break;
      case 'subscribed':
        if (this.pending?.id === message.id) this.activate(message);
        break;
      case 'snapshot':
        if (this.active?.id === message.id) {
          this.countReceived(message.rows.length);
          this.grid.applySnapshot(message.rows, this.active);
        }
        break;
      case 'snapshotEnd':
        if (this.active?.id === message.id) {
          this.active.snapshotDone = true;
          this.grid.endSnapshot();
          this.showFilterState(`Applied · snapshot ${message.rows} row${message.rows === 1 ? '' : 's'}`);
          if (this.notice?.startsWith('The worker is still loading')) this.showNotice('');
        }
        break;
      case 'changes':
        if (this.active?.id === message.id) {
          this.countReceived(message.changes.length);
          this.grid.applyChanges(message.changes, this.active);
        }
        break;
      case 'error':
        this.onServerError(message);
        break;
      default:
        break; // pong, unsubscribed
    }
  }

  activate(message) {
    const sub = this.pending;
    this.pending = null;
    this.unsubscribe(this.active);
    sub.granted = message.credits; // the server may have capped the window
    sub.window = Math.max(1, Math.min(sub.window, message.credits || sub.window));
    this.active = sub;
    this.grid.beginSnapshot();
    this.showMessagePreview(message.filter);
    this.showFilterState('Applied · loading snapshot…');
  }

  countReceived(n) {
    const sub = this.active;
    sub.received += n;
    if (sub.snapshotDone && sub.received >= sub.granted && !sub.starved) {
      // No credit left: the server now holds this view's changes and conflates them per row.
      sub.starved = true;
      this.showNotice('The page is behind the stream: the server is conflating updates '
        + '(latest version per row) until it catches up.');
    }
  }

  onServerError(message) {
    const where = message.path ? ` at ${message.path}` : '';
    const text = `${message.code}: ${message.message}${where}`;
    if (message.id && this.pending?.id === message.id) {
      this.pending = null;
      this.showError(`Filter not applied (${text}). The previous view is still shown.`);
      this.showFilterState('Not applied');
      return;
    }
    if (message.id && this.active?.id === message.id && message.code === 'SLOW_CONSUMER') {
      const { filter } = this.active;
      this.active = null;
      this.showNotice(`The server closed this view as a slow consumer at ${clock()} (too many updates `
        + 'pending while the page was behind). Resubscribing for a fresh snapshot…');
      this.retryTimer = setTimeout(() => this.subscribe(filter), SLOW_CONSUMER_RETRY_MS);
      return;
    }
    this.showError(text);
  }

  resubscribe() {
    // A new connection has no subscriptions: subscribe again with the filter in force (the
    // pending one if it was never acknowledged). The grid keeps its rows until the snapshot ends.
    const previous = this.pending ?? this.active;
    this.active = this.pending = null;
    this.subscribe(previous && previous.type === this.type ? previous.filter : undefined);
  }

  onClose(info) {
    if (!info.opened) this.checkAuth();
  }

  /** The handshake failed before opening: find out whether the token is the reason. */
  async checkAuth() {
    try {
      const response = await this.fetchApi('/v1/trade-blotter/metadata');
      if (response.status === 401) {
        this.showError('The server refused the token: enter a valid one in the Token field.');
        this.stream.stop('unauthorized');
      }
    } catch {
      // unreachable: the stream keeps retrying with backoff
    }
  }

  // -- display --------------------------------------------------------------------------------
  showStatus(status) {
    const box = $('status');
    box.dataset.state = status.state;
    const text = {
      connecting: 'Real-Time Updates: Connecting…',
      connected: 'Real-Time Updates: Connected',
      reconnecting: status.delayMs != null
        ? `Real-Time Updates: Reconnecting in ${(status.delayMs / 1000).toFixed(1)} s (attempt ${status.attempt})`
        : `Real-Time Updates: Reconnecting (attempt ${status.attempt})…`,
      disconnected: `Real-Time Updates: Disconnected${status.reason ? ` — ${status.reason}` : ''}`,
    }[status.state];
    $('status-text').textContent = text;
    $('reconnect').hidden = status.state === 'connected' || status.state === 'connecting';
  }

  showRowCount() {
    $('row-count').textContent = String(this.grid?.size ?? 0);
  }

  tickRate() {
    $('update-rate').textContent = String(this.changeCount);
    this.changeCount = 0;
    this.showRowCount();
  }

  showError(text) {
    const box = $('error');
    box.textContent = text;
    box.hidden = !text;
  }

  showNotice(text) {
    this.notice = text;
    const box = $('notice');
    box.textContent = text;
    box.hidden = !text;
  }

  showFilterState(text) {
    $('filter-state').textContent = text;
  }

  showMessagePreview(normalized) {
    const sub = this.pending ?? this.active;
    const preview = {
      type: 'subscribe',
      id: sub?.id ?? 's1',
      objectType: this.type,
      filter: this.builder.toFilter(),
      credits: sub?.window ?? MAX_WINDOW,
    };
    let text = JSON.stringify(preview, null, 2);
    if (normalized !== undefined) text += `\n\n// normalized by the server:\n${JSON.stringify(normalized, null, 2)}`;
    $('filter-json').textContent = text;
  }
}

/** The token from `?access_token=` (then removed from the address bar), else this tab's last. */
function takeToken() {
  const url = new URL(window.location.href);
  const fromUrl = url.searchParams.get('access_token');
  if (fromUrl) {
    url.searchParams.delete('access_token');
    history.replaceState(null, '', url.pathname + url.search + url.hash);
    sessionStorage.setItem(TOKEN_STORAGE_KEY, fromUrl);
    return fromUrl;
  }
  return sessionStorage.getItem(TOKEN_STORAGE_KEY) ?? '';
}

function clock() {
  return new Date().toLocaleTimeString();
}

const page = new BlotterPage();
window.blotterPage = page; // for the console and scripted checks
page.start();
