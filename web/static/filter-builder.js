// The filter builder: a tree of AND/OR/NOT groups and conditions, generated from the metadata of
// one object type, serialized to the native filter grammar of the stream (docs/asyncapi.yaml).
//
// Only operators valid for a field's dataType are offered (the same table the server validates
// with, app/domain/filter_tree.py), enum fields get a drop-down of their values, and values keep
// their exact text: a decimal is sent as the string typed, never parsed into a float.

import { el, humanize } from './format.js';

const EQUALITY = ['equals', 'notEquals'];
const ORDERING = ['greaterThan', 'greaterThanOrEqual', 'lessThan', 'lessThanOrEqual'];
const TEXT = ['contains', 'startsWith', 'endsWith'];
const NULLS = ['isNull', 'isNotNull'];
const ORDERED_TYPES = new Set(['String', 'Integer', 'Long', 'Decimal', 'Timestamp', 'Date']);
const IN_TYPES = new Set(['String', 'Enum', 'Integer', 'Long', 'Decimal', 'Date', 'Boolean']);
const IGNORE_CASE_OPERATORS = new Set(['equals', 'notEquals', 'contains', 'startsWith', 'endsWith', 'in']);

export const OPERATOR_LABELS = {
  equals: '=',
  notEquals: '≠',
  greaterThan: '>',
  greaterThanOrEqual: '≥',
  lessThan: '<',
  lessThanOrEqual: '≤',
  contains: 'contains',
  startsWith: 'starts with',
  endsWith: 'ends with',
  in: 'in',
  isNull: 'is null',
  isNotNull: 'is not null',
};

const GROUP_LABELS = { AND: 'AND (all of)', OR: 'OR (any of)', NOT: 'NOT (not all of)' };

/** The operators the server accepts for a field of `dataType`, in menu order. */
export function operatorsFor(dataType) {
  const ops = [...EQUALITY];
  if (ORDERED_TYPES.has(dataType)) ops.push(...ORDERING);
  if (dataType === 'String') ops.push(...TEXT);
  if (IN_TYPES.has(dataType)) ops.push('in');
  ops.push(...NULLS);
  return ops;
}

function newGroup(logical = 'AND') {
  return { kind: 'group', logical, children: [] };
}

function newCondition() {
  return { kind: 'condition', field: '', operator: '', value: '', values: [], ignoreCase: false };
}

function typedScalar(text, dataType) {
  const trimmed = String(text).trim();
  if ((dataType === 'Integer' || dataType === 'Long') && /^[+-]?\d+$/.test(trimmed)) {
    const number = Number(trimmed);
    return Number.isSafeInteger(number) ? number : trimmed;
  }
  if (dataType === 'Boolean') return trimmed === 'true' ? true : trimmed === 'false' ? false : trimmed;
  if (dataType === 'Decimal') return trimmed; // exact: the server parses the string
  return dataType === 'String' ? String(text) : trimmed;
}

export class FilterBuilder {
  constructor(container, { onChange = () => {} } = {}) {
    this.container = container;
    this.onChange = onChange;
    this.type = null;
    this.root = newGroup();
  }

  /** Switch to another object type's fields, restoring `tree` when given. */
  setType(typeMeta, tree = null) {
    this.type = typeMeta;
    this.fields = new Map(typeMeta.fields.filter((f) => f.filterable).map((f) => [f.name, f]));
    this.root = tree ?? newGroup();
    this.render();
  }

  clear() {
    this.root = newGroup();
    this.render();
  }

  /** The builder's tree, to restore later with setType. */
  get tree() {
    return this.root;
  }

  /** Convenience for scripted use: one condition per entry, ANDed. */
  setConditions(conditions) {
    this.root = newGroup();
    for (const { field, operator, value } of conditions) {
      const condition = { ...newCondition(), field, operator };
      if (Array.isArray(value)) condition.values = value.map(String);
      else condition.value = value == null ? '' : String(value);
      this.root.children.push(condition);
    }
    this.render();
  }

  /** The filter in the native grammar, or null for "everything". */
  toFilter() {
    const node = this.serialize(this.root);
    if (node && node.logicalOperator === 'AND' && node.filters.length === 0) return null;
    return node;
  }

  serialize(node) {
    if (node.kind === 'condition') return this.serializeCondition(node);
    const filters = node.children.map((child) => this.serialize(child)).filter(Boolean);
    if (node.logical === 'NOT') {
      // The server's NOT takes exactly one filter: NOT of several means "not all of them".
      const inner = filters.length === 1 ? filters[0] : { logicalOperator: 'AND', filters };
      return { logicalOperator: 'NOT', filters: [inner] };
    }
    return { logicalOperator: node.logical, filters };
  }

  serializeCondition(condition) {
    const field = this.fields.get(condition.field);
    if (!field || !condition.operator) return null;
    const leaf = { fieldName: field.name, operator: condition.operator };
    if (NULLS.includes(condition.operator)) return leaf;
    if (condition.operator === 'in') {
      const raw = field.dataType === 'Enum' || field.dataType === 'Boolean'
        ? condition.values
        : String(condition.value).split(',').map((part) => part.trim()).filter((part) => part !== '');
      leaf.value = raw.map((item) => typedScalar(item, field.dataType));
    } else if (field.dataType === 'Enum') {
      leaf.value = condition.value;
    } else {
      leaf.value = typedScalar(condition.value, field.dataType);
    }
    if (condition.ignoreCase && field.dataType === 'String' && IGNORE_CASE_OPERATORS.has(condition.operator)) {
      leaf.ignoreCase = true;
    }
    return leaf;
  }

  changed() {
    this.onChange(this.toFilter());
  }

  // -- rendering ----------------------------------------------------------------------------
  render() {
    this.container.replaceChildren(this.renderGroup(this.root, null));
    this.changed();
  }

  renderGroup(group, parent) {
    const logical = el('select', {
      class: 'fb-logical',
      'aria-label': 'Combine conditions with',
      onchange: (event) => {
        group.logical = event.target.value;
        this.changed();
      },
    }, Object.entries(GROUP_LABELS).map(([value, label]) => el('option', { value, text: label })));
    logical.value = group.logical;
    const header = el('div', { class: 'fb-group-header' },
      logical,
      el('button', {
        type: 'button', class: 'fb-add-condition', text: '+ Condition',
        onclick: () => { group.children.push(newCondition()); this.render(); },
      }),
      el('button', {
        type: 'button', class: 'fb-add-group', text: '+ Group',
        onclick: () => { group.children.push(newGroup('OR')); this.render(); },
      }),
      parent && el('button', {
        type: 'button', class: 'fb-remove', 'aria-label': 'Remove group', text: '×',
        onclick: () => { parent.children.splice(parent.children.indexOf(group), 1); this.render(); },
      }),
    );
    const body = el('div', { class: 'fb-children' },
      group.children.map((child) => (child.kind === 'group'
        ? this.renderGroup(child, group)
        : this.renderCondition(child, group))));
    if (group.children.length === 0) {
      body.append(el('div', { class: 'fb-empty', text: parent ? 'No conditions.' : 'No filter: every row.' }));
    }
    return el('div', { class: 'fb-group', 'data-logical': group.logical }, header, body);
  }

  renderCondition(condition, parent) {
    const row = el('div', { class: 'fb-condition' });
    const fieldSelect = el('select', {
      class: 'fb-field', 'aria-label': 'Field',
      onchange: (event) => {
        condition.field = event.target.value;
        const ops = this.fields.has(condition.field) ? operatorsFor(this.fields.get(condition.field).dataType) : [];
        if (!ops.includes(condition.operator)) condition.operator = ops[0] ?? '';
        condition.value = '';
        condition.values = [];
        this.fillCondition(row, condition, parent, fieldSelect);
        this.changed();
      },
    }, el('option', { value: '', text: 'Field…' }),
    [...this.fields.values()].map((f) => el('option', { value: f.name, title: f.description, text: humanize(f.name) })));
    fieldSelect.value = condition.field;
    this.fillCondition(row, condition, parent, fieldSelect);
    return row;
  }

  fillCondition(row, condition, parent, fieldSelect) {
    const field = this.fields.get(condition.field);
    const ops = field ? operatorsFor(field.dataType) : [];
    const operatorSelect = el('select', {
      class: 'fb-operator', 'aria-label': 'Operator', disabled: !field,
      onchange: (event) => {
        condition.operator = event.target.value;
        this.fillCondition(row, condition, parent, fieldSelect);
        this.changed();
      },
    }, ops.map((op) => el('option', { value: op, text: OPERATOR_LABELS[op] })));
    operatorSelect.value = condition.operator;
    const parts = [fieldSelect, operatorSelect];
    if (field && !NULLS.includes(condition.operator)) parts.push(this.valueInput(field, condition));
    if (field && field.dataType === 'String' && IGNORE_CASE_OPERATORS.has(condition.operator)) {
      const box = el('input', {
        type: 'checkbox', class: 'fb-ignore-case', checked: condition.ignoreCase,
        onchange: (event) => { condition.ignoreCase = event.target.checked; this.changed(); },
      });
      parts.push(el('label', { class: 'fb-ignore-case-label', title: 'Ignore case' }, box, 'Aa'));
    }
    parts.push(el('button', {
      type: 'button', class: 'fb-remove', 'aria-label': 'Remove condition', text: '×',
      onclick: () => { parent.children.splice(parent.children.indexOf(condition), 1); this.render(); },
    }));
    if (field) row.title = field.description;
    row.replaceChildren(...parts);
  }

  valueInput(field, condition) {
    const type = field.dataType;
    const choices = type === 'Enum' ? field.values ?? [] : type === 'Boolean' ? ['true', 'false'] : null;
    if (choices) {
      const multiple = condition.operator === 'in';
      const select = el('select', {
        class: 'fb-value', 'aria-label': 'Value', multiple,
        size: multiple ? Math.min(choices.length, 4) : null,
        onchange: (event) => {
          if (multiple) condition.values = [...event.target.selectedOptions].map((o) => o.value);
          else condition.value = event.target.value;
          this.changed();
        },
      }, choices.map((value) => el('option', { value, text: value })));
      if (multiple) {
        for (const option of select.options) option.selected = condition.values.includes(option.value);
      } else {
        if (!choices.includes(condition.value)) condition.value = choices[0] ?? '';
        select.value = condition.value;
      }
      return select;
    }
    const placeholders = {
      Timestamp: '2026-11-20T14:00:00Z',
      Date: 'YYYY-MM-DD',
      Decimal: '101.25',
      Integer: '0',
      Long: '0',
      String: 'text',
    };
    const input = el('input', {
      class: 'fb-value', 'aria-label': 'Value', type: 'text', spellcheck: 'false',
      inputmode: type === 'Decimal' ? 'decimal' : type === 'Integer' || type === 'Long' ? 'numeric' : null,
      placeholder: condition.operator === 'in' ? `${placeholders[type] ?? ''}, …` : placeholders[type] ?? '',
      oninput: (event) => { condition.value = event.target.value; this.changed(); },
    });
    input.value = condition.value;
    return input;
  }
}
