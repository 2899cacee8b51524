// The grid of one subscription: AG Grid Community fed by the stream's snapshot and changes.
//
// The page keeps, per object id, the sequence it holds and whether the row is in the grid, and
// turns each server batch into one AG Grid transaction (add / update / remove), applied with
// applyTransactionAsync so bursts are batched into few renders. Entries are applied in the order
// received; an upsert whose sequence is not above the held one is ignored (see the view
// semantics in docs/asyncapi.yaml). The callback of each transaction reports how many entries
// were consumed, which is what the page grants back as credits: a grid that falls behind stops
// asking for rows, and the server conflates instead of flooding the browser.
//
// A new subscription on the same grid (a new filter, or a reconnect) does not clear the grid:
// rows of the new snapshot replace the old ones in place and, at snapshotEnd, rows the snapshot
// did not contain are removed. The view never flickers empty.

/* global agGrid */
import { compareDecimal, decimalSign, formatTimestamp, humanize } from './format.js';

const TRAILING_FIELDS = ['sequence', 'eventId', 'eventTime', 'correlationId', 'causationId', 'source'];
// Fields shown right after the key because a trader scans them first.
const LEADING_FIELDS = { Position: ['account', 'symbol', 'status'] };
const WIDTHS = { Timestamp: 190, Date: 120, Decimal: 120, Enum: 150, Boolean: 90, Integer: 100, Long: 100 };

export const ROW_KEY = '__key';
export const ROW_SEQUENCE = '__seq';

/** AG Grid column definitions for an object type's metadata (key field first). */
export function columnDefsFor(typeMeta) {
  const fields = [...typeMeta.fields];
  const leading = LEADING_FIELDS[typeMeta.name] ?? [];
  const rank = (f) => {
    if (f.name === typeMeta.keyField) return -100;
    if (leading.includes(f.name)) return -50 + leading.indexOf(f.name);
    return TRAILING_FIELDS.includes(f.name) ? 1 : 0;
  };
  fields.sort((a, b) => rank(a) - rank(b)); // stable: metadata order within a rank
  return fields.map((field) => {
    const def = {
      field: field.name,
      colId: field.name,
      headerName: humanize(field.name),
      headerTooltip: field.description,
      sortable: field.sortable !== false,
      width: WIDTHS[field.dataType] ?? 130,
    };
    if (field.name === typeMeta.keyField) def.pinned = 'left';
    if (field.dataType === 'Decimal') {
      def.comparator = compareDecimal;
      def.type = 'rightAligned';
    } else if (field.dataType === 'Integer' || field.dataType === 'Long') {
      def.type = 'rightAligned';
    } else if (field.dataType === 'Timestamp') {
      def.valueFormatter = (params) => formatTimestamp(params.value);
    }
    if (field.dataType === 'Enum') def.cellClass = (params) => (params.value ? `enum enum-${params.value}` : 'enum');
    if (/pnl$/i.test(field.name)) {
      def.cellClassRules = {
        'pnl-positive': (params) => decimalSign(params.value) > 0,
        'pnl-negative': (params) => decimalSign(params.value) < 0,
      };
    }
    return def;
  });
}

export class BlotterGrid {
  /**
   * @param {HTMLElement} container
   * @param {object} typeMeta  one entry of GET /v1/trade-blotter/metadata
   * @param {object} [options]
   * @param {(n: number, changes: number, tag: any) => void} [options.onApplied] entries consumed,
   *   how many of them were changes, and the tag given with them (the subscription)
   * @param {object} [options.gridOptions] extra AG Grid options (Positions adds its own)
   * @param {object[]} [options.extraColumns] column definitions put before the metadata's
   * @param {object} [options.columnOverrides] field name -> properties merged into its column
   */
  constructor(container, typeMeta, {
    onApplied = () => {}, gridOptions = {}, extraColumns = [], columnOverrides = {},
  } = {}) {
    this.typeMeta = typeMeta;
    this.onApplied = onApplied;
    this.sequences = new Map(); // key -> sequence held
    this.inGrid = new Set(); // keys in the grid once the submitted transactions are applied
    this.snapshotKeys = null; // keys seen in the snapshot being received, or null
    this.listeners = new Set();
    container.replaceChildren();
    this.api = agGrid.createGrid(container, {
      theme: agGrid.themeQuartz.withParams({
        fontSize: 12,
        headerFontSize: 12,
        spacing: 5,
        wrapperBorderRadius: 4,
      }),
      columnDefs: [
        ...extraColumns,
        ...columnDefsFor(typeMeta).map((def) => ({ ...def, ...columnOverrides[def.field] })),
      ],
      defaultColDef: { resizable: true, filter: false, minWidth: 60 },
      rowData: [],
      getRowId: (params) => params.data[ROW_KEY],
      asyncTransactionWaitMillis: 50,
      animateRows: false, // rows move on every update in a live blotter: animating them only blurs
      suppressDragLeaveHidesColumns: true,
      ...gridOptions,
    });
  }

  /** Number of rows in the view (the grid may show more or fewer until transactions apply). */
  get size() {
    return this.inGrid.size;
  }

  /** Called with the keys whose rows were just upserted and removed. */
  onRows(listener) {
    this.listeners.add(listener);
  }

  /** A new subscription's snapshot starts: its rows will replace the current ones. */
  beginSnapshot() {
    this.snapshotKeys = new Set();
  }

  applySnapshot(entries, tag) {
    this.apply(entries, 0, this.snapshotKeys, tag);
  }

  /** The snapshot is complete: drop the rows it did not contain. */
  endSnapshot() {
    const seen = this.snapshotKeys;
    this.snapshotKeys = null;
    if (!seen) return;
    const stale = [...this.sequences.keys()].filter((key) => !seen.has(key));
    this.apply(stale.map((key) => ({ op: 'remove', key, sequence: this.sequences.get(key) })), 0, null, null, true);
  }

  applyChanges(entries, tag) {
    this.apply(entries, entries.length, null, tag);
  }

  /** The server's row of `key` as held. */
  row(key) {
    return this.api.getRowNode(key)?.data ?? null;
  }

  /** Apply entries in order as one async transaction; `internal` entries are not credited. */
  apply(entries, changeCount, seen, tag, internal = false) {
    const latest = new Map(); // key -> row or null (removed), in first-touched order
    for (const entry of entries) {
      const { key, sequence } = entry;
      const held = this.sequences.get(key);
      if (entry.op === 'remove') {
        if (held === undefined || sequence < held) continue;
        this.sequences.delete(key);
        latest.set(key, null);
        continue;
      }
      seen?.add(key);
      if (held !== undefined && sequence <= held) continue;
      this.sequences.set(key, sequence);
      latest.set(key, { ...entry.row, [ROW_KEY]: key, [ROW_SEQUENCE]: sequence });
    }
    const transaction = { add: [], update: [], remove: [] };
    const upserted = [];
    const removed = [];
    for (const [key, row] of latest) {
      if (row === null) {
        if (this.inGrid.delete(key)) {
          transaction.remove.push({ [ROW_KEY]: key });
          removed.push(key);
        }
      } else {
        (this.inGrid.has(key) ? transaction.update : transaction.add).push(row);
        this.inGrid.add(key);
        upserted.push(key);
      }
    }
    const consumed = internal ? 0 : entries.length;
    if (upserted.length || removed.length) {
      this.api.applyTransactionAsync(transaction, () => {
        this.onApplied(consumed, changeCount, tag);
        for (const listener of this.listeners) listener(upserted, removed);
      });
    } else if (consumed) {
      this.onApplied(consumed, changeCount, tag);
    }
  }

  destroy() {
    this.listeners.clear();
    this.api.destroy();
  }
}
