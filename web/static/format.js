// Value helpers shared by the grid and the filter builder.
//
// Money and quantities arrive as exact decimal strings. The page never turns them into binary
// floats: it shows them as sent and sorts them with an exact string comparison, so two prices
// that differ in the 17th digit still sort apart.

const DECIMAL = /^([+-]?)(\d*)(?:\.(\d*))?$/;

function parseDecimal(text) {
  const match = DECIMAL.exec(String(text).trim());
  if (!match || (match[2] === '' && (match[3] ?? '') === '')) return null;
  const integer = match[2].replace(/^0+/, '');
  const fraction = (match[3] ?? '').replace(/0+$/, '');
  const zero = integer === '' && fraction === '';
  return { negative: match[1] === '-' && !zero, integer, fraction };
}

function compareMagnitude(a, b) {
  if (a.integer.length !== b.integer.length) return a.integer.length < b.integer.length ? -1 : 1;
  if (a.integer !== b.integer) return a.integer < b.integer ? -1 : 1;
  const width = Math.max(a.fraction.length, b.fraction.length);
  const fa = a.fraction.padEnd(width, '0');
  const fb = b.fraction.padEnd(width, '0');
  return fa === fb ? 0 : fa < fb ? -1 : 1;
}

/** Exact order of two decimal strings; nulls first; unparsable text after numbers. */
export function compareDecimal(x, y) {
  if (x == null || y == null) return x == null ? (y == null ? 0 : -1) : 1;
  const a = parseDecimal(x);
  const b = parseDecimal(y);
  if (!a || !b) return !a && !b ? String(x).localeCompare(String(y)) : a ? -1 : 1;
  if (a.negative !== b.negative) return a.negative ? -1 : 1;
  const order = compareMagnitude(a, b);
  return a.negative ? -order : order;
}

/** -1, 0 or 1 for a decimal string (0 for null or unparsable). */
export function decimalSign(text) {
  if (text == null) return 0;
  const value = parseDecimal(text);
  if (!value || (value.integer === '' && value.fraction === '')) return 0;
  return value.negative ? -1 : 1;
}

/** ISO-8601 UTC with milliseconds -> "2026-11-20 14:00:00.000" (still UTC, still sortable). */
export function formatTimestamp(text) {
  if (typeof text !== 'string') return text ?? '';
  return text.replace('T', ' ').replace(/Z$/, '');
}

/** "orderQty" -> "Order Qty", "realizedPnl" -> "Realized P&L". */
export function humanize(name) {
  const spaced = name.replace(/([a-z0-9])([A-Z])/g, '$1 $2').replace(/([A-Z]+)([A-Z][a-z])/g, '$1 $2');
  return (spaced.charAt(0).toUpperCase() + spaced.slice(1)).replace(/\bPnl\b/, 'P&L');
}

/** An element with text content (never innerHTML: row values come from upstream systems). */
export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value == null || value === false) continue;
    if (name === 'class') node.className = value;
    else if (name === 'text') node.textContent = value;
    else if (name.startsWith('on') && typeof value === 'function') {
      node.addEventListener(name.slice(2), value);
    } else node.setAttribute(name, value === true ? '' : String(value));
  }
  for (const child of children.flat()) {
    if (child == null) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}
