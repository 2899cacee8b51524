// Runs the page's own modules (web/static/*.js) without a browser, for the Python tests: one JSON
// request per line on stdin, one JSON answer per line on stdout. Only logic that needs no DOM is
// reached: decimal ordering, the operators offered per type, filter serialization, the backoff,
// and how server entries become AG Grid transactions.

import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { dirname, join } from 'node:path';

const STATIC = join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'web', 'static');
const { compareDecimal, decimalSign } = await import(join(STATIC, 'format.js'));
const { FilterBuilder, operatorsFor } = await import(join(STATIC, 'filter-builder.js'));
const { backoffDelay } = await import(join(STATIC, 'stream.js'));
const { BlotterGrid } = await import(join(STATIC, 'grid.js'));

/** A BlotterGrid whose AG Grid is a recorder of transactions (applied at once). */
function recordingGrid() {
  const grid = Object.create(BlotterGrid.prototype);
  grid.sequences = new Map();
  grid.inGrid = new Set();
  grid.snapshotKeys = null;
  grid.listeners = new Set();
  grid.credited = 0;
  grid.onApplied = (n) => { grid.credited += n; };
  grid.transactions = [];
  grid.api = {
    applyTransactionAsync(transaction, callback) {
      grid.transactions.push(transaction);
      callback();
    },
  };
  return grid;
}

const handlers = {
  sort: ({ values }) => ({ sorted: [...values].sort(compareDecimal) }),
  signs: ({ values }) => ({ signs: values.map(decimalSign) }),
  operators: ({ types }) => ({ operators: Object.fromEntries(types.map((t) => [t, operatorsFor(t)])) }),
  backoff: ({ attempts, randoms }) => ({
    delays: attempts.map((attempt, i) => backoffDelay(attempt, () => randoms[i])),
  }),
  serialize: ({ typeMeta, tree }) => {
    const builder = new FilterBuilder(null);
    builder.type = typeMeta;
    builder.fields = new Map(typeMeta.fields.filter((f) => f.filterable).map((f) => [f.name, f]));
    builder.root = tree;
    return { filter: builder.toFilter() };
  },
  // steps: [{kind: 'begin'|'snapshot'|'end'|'changes', entries?}]
  applyEntries: ({ steps }) => {
    const grid = recordingGrid();
    for (const step of steps) {
      if (step.kind === 'begin') grid.beginSnapshot();
      else if (step.kind === 'snapshot') grid.applySnapshot(step.entries);
      else if (step.kind === 'end') grid.endSnapshot();
      else grid.applyChanges(step.entries);
    }
    return {
      transactions: grid.transactions,
      inGrid: [...grid.inGrid],
      sequences: Object.fromEntries(grid.sequences),
      credited: grid.credited,
    };
  },
};

const lines = createInterface({ input: process.stdin });
for await (const line of lines) {
  if (!line.trim()) continue;
  const { op, ...args } = JSON.parse(line);
  let answer;
  try {
    answer = { ok: true, ...handlers[op](args) };
  } catch (error) {
    answer = { ok: false, error: String(error.stack || error) };
  }
  process.stdout.write(`${JSON.stringify(answer)}\n`);
}
