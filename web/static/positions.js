// The Positions view: each position row can be expanded to show its open tax lots.
//
// The stream carries positions without their lots (a position with 1,000 lots would make every
// update heavy), so lots are fetched from GET /v1/positions/{key} when a row is expanded, and
// fetched again when an expanded position changes. AG Grid Community has no master/detail, so
// the lots sit in a full-width row placed right under their position whatever the sort order.

import { decimalSign, el, formatTimestamp } from './format.js';
import { ROW_KEY } from './grid.js';

const DETAIL_PREFIX = '__lots__:';
const DETAIL_FLAG = '__detail';
const DETAIL_PARENT = '__parent';
const REFETCH_DELAY_MS = 200;

function detailId(key) {
  return DETAIL_PREFIX + key;
}

function statusBadge(status) {
  if (!status) return '';
  const provisional = status === 'PROVISIONAL';
  return el('span', {
    class: `badge ${provisional ? 'badge-provisional' : 'badge-reconciled'}`,
    title: provisional
      ? 'A backdated trade is being replayed; figures are an estimate until the correction lands'
      : 'Reconciled',
    text: status,
  });
}

function signed(text) {
  const sign = decimalSign(text);
  return el('span', { class: sign > 0 ? 'pnl-positive' : sign < 0 ? 'pnl-negative' : '', text: text ?? '—' });
}

class LotsRenderer {
  init(params) {
    this.gui = el('div', { class: 'lots-detail' });
    this.refresh(params);
  }

  getGui() {
    return this.gui;
  }

  refresh(params) {
    const data = params.data;
    if (data.error) {
      this.gui.replaceChildren(el('div', { class: 'lots-error', text: data.error }));
      return true;
    }
    if (!data.position) {
      this.gui.replaceChildren(el('div', { class: 'lots-loading', text: 'Loading lots…' }));
      return true;
    }
    const p = data.position;
    const summary = el('div', { class: 'lots-summary' },
      el('span', {}, 'Lots of ', el('strong', { text: p.positionKey })),
      el('span', {}, 'Method ', el('strong', { text: p.lotMethod })),
      el('span', {}, 'Quantity ', el('strong', { text: p.quantity })),
      el('span', {}, 'Realized P&L ', signed(p.realizedPnl)),
      el('span', {}, 'Unrealized P&L ', signed(p.unrealizedPnl)),
      el('span', {}, 'at last price ', el('strong', { text: p.lastPrice ?? '—' })),
      el('span', {}, 'Version ', el('strong', { text: p.version })),
      statusBadge(p.status));
    const lots = p.lots ?? [];
    const head = el('tr', {}, ['Lot', 'Trade', 'Effective date', 'Trade time', 'Quantity', 'Cost price']
      .map((label) => el('th', { text: label })));
    const rows = lots.map((lot) => el('tr', { class: 'lot-row', 'data-lot-id': lot.lotId },
      el('td', { text: lot.lotId }),
      el('td', { text: lot.tradeId }),
      el('td', { text: lot.effectiveDate }),
      el('td', { text: formatTimestamp(lot.tradeTime) }),
      el('td', { class: 'num', text: lot.quantity }),
      el('td', { class: 'num', text: lot.costPrice })));
    const table = lots.length
      ? el('table', { class: 'lots-table' }, el('thead', {}, head), el('tbody', {}, rows))
      : el('div', { class: 'lots-empty', text: 'No open lots (the position is flat).' });
    this.gui.replaceChildren(summary, el('div', { class: 'lots-scroll' }, table));
    return true;
  }
}

export class PositionLots {
  /**
   * @param {(path: string) => Promise<Response>} fetchApi  authenticated GET on the REST API
   */
  constructor(fetchApi) {
    this.fetchApi = fetchApi;
    this.expanded = new Set();
    this.timers = new Map();
    this.grid = null;
  }

  /** Columns and grid options the Positions grid needs on top of the metadata's. */
  gridSetup() {
    const toggleColumn = {
      colId: 'lots',
      headerName: '',
      width: 44,
      minWidth: 44,
      pinned: 'left',
      sortable: false,
      resizable: false,
      suppressMovable: true,
      cellRenderer: (params) => {
        const key = params.data?.[ROW_KEY];
        if (!key) return '';
        const open = this.expanded.has(key);
        return el('button', {
          type: 'button',
          class: 'lots-toggle',
          'data-key': key,
          'aria-expanded': String(open),
          'aria-label': `${open ? 'Hide' : 'Show'} lots of ${key}`,
          title: `${open ? 'Hide' : 'Show'} lots`,
          text: open ? '▾' : '▸',
          onclick: () => this.toggle(key),
        });
      },
    };
    const gridOptions = {
      isFullWidthRow: (params) => Boolean(params.rowNode.data?.[DETAIL_FLAG]),
      fullWidthCellRenderer: LotsRenderer,
      getRowHeight: (params) => (params.data?.[DETAIL_FLAG] ? this.detailHeight(params.data) : undefined),
      postSortRows: (params) => this.keepDetailsUnderParents(params.nodes),
    };
    const columnOverrides = { status: { cellRenderer: (params) => statusBadge(params.value) } };
    return { extraColumns: [toggleColumn], gridOptions, columnOverrides };
  }

  /** Attach to the Positions grid (rows keyed by positionKey). */
  attach(grid) {
    this.grid = grid;
    grid.onRows((upserted, removed) => {
      for (const key of removed) this.collapse(key);
      for (const key of upserted) if (this.expanded.has(key)) this.scheduleFetch(key);
    });
  }

  detach() {
    for (const timer of this.timers.values()) clearTimeout(timer);
    this.timers.clear();
    this.expanded.clear();
    this.grid = null;
  }

  toggle(key) {
    if (this.expanded.has(key)) this.collapse(key);
    else this.expand(key);
  }

  expand(key) {
    if (!this.grid || this.expanded.has(key)) return;
    this.expanded.add(key);
    this.grid.api.applyTransaction({ add: [{ [ROW_KEY]: detailId(key), [DETAIL_FLAG]: true, [DETAIL_PARENT]: key }] });
    this.redrawToggle(key);
    this.fetch(key);
  }

  collapse(key) {
    if (!this.grid || !this.expanded.delete(key)) return;
    clearTimeout(this.timers.get(key));
    this.timers.delete(key);
    this.grid.api.applyTransaction({ remove: [{ [ROW_KEY]: detailId(key) }] });
    this.redrawToggle(key);
  }

  scheduleFetch(key) {
    clearTimeout(this.timers.get(key));
    this.timers.set(key, setTimeout(() => this.fetch(key), REFETCH_DELAY_MS));
  }

  async fetch(key) {
    let data;
    try {
      const response = await this.fetchApi(`/v1/positions/${encodeURIComponent(key)}`);
      const body = await response.json().catch(() => ({}));
      data = response.ok
        ? { position: body }
        : { error: `Lots unavailable: ${body.error?.code ?? response.status} ${body.error?.message ?? ''}`.trim() };
    } catch (error) {
      data = { error: `Lots unavailable: ${error.message}` };
    }
    if (!this.grid || !this.expanded.has(key)) return;
    const node = this.grid.api.getRowNode(detailId(key));
    if (!node) return;
    node.setData({ ...node.data, ...data, position: data.position ?? null, error: data.error ?? null });
    node.setRowHeight(this.detailHeight(node.data));
    this.grid.api.onRowHeightChanged();
  }

  detailHeight(data) {
    const lots = data.position?.lots?.length ?? 0;
    return Math.min(360, 56 + 22 * (lots + 1));
  }

  redrawToggle(key) {
    const node = this.grid?.api.getRowNode(key);
    if (node) this.grid.api.refreshCells({ rowNodes: [node], columns: ['lots'], force: true });
  }

  keepDetailsUnderParents(nodes) {
    const details = new Map();
    const parents = [];
    for (const node of nodes) {
      if (node.data?.[DETAIL_FLAG]) details.set(node.data[DETAIL_PARENT], node);
      else parents.push(node);
    }
    if (details.size === 0) return;
    const ordered = [];
    for (const node of parents) {
      ordered.push(node);
      const detail = details.get(node.data?.[ROW_KEY]);
      if (detail) ordered.push(detail);
    }
    nodes.splice(0, nodes.length, ...ordered);
  }
}
