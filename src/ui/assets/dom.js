// Small DOM helpers. Text always goes in as text nodes (never parsed as HTML), so
// nothing an API answer contains can become markup or script.

/** h('tag', {attrs, on: {event: fn}}, ...children) */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (name === 'on') {
      for (const [event, fn] of Object.entries(value)) el.addEventListener(event, fn);
    } else if (name === 'class') {
      el.className = value;
    } else if (name === 'value' || name === 'checked' || name === 'disabled' || name === 'selected') {
      el[name] = value;
    } else {
      el.setAttribute(name, value === true ? '' : String(value));
    }
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child === undefined || child === null || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

export function clear(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

/** A table: columns [{label, value: row => node|text}] */
export function table(columns, rows, { empty = 'Nothing yet.', onRow, label } = {}) {
  if (!rows.length) return h('p', { class: 'muted' }, empty);
  return h('div', { class: 'table-wrap' },
    h('table', { 'aria-label': label },
      h('thead', {}, h('tr', {}, columns.map(c => h('th', { scope: 'col' }, c.label)))),
      h('tbody', {}, rows.map(row => h('tr', onRow ? { class: 'clickable', on: { click: () => onRow(row) } } : {},
        columns.map(c => h('td', {}, c.value(row))))))));
}

/** A labelled form field. */
export function field(label, input) {
  return h('label', {}, label, input);
}

export function input(name, attrs = {}) {
  return h('input', { name, ...attrs });
}

export function select(name, options, value) {
  return h('select', { name }, options.map(o => {
    const [v, text] = Array.isArray(o) ? o : [o, o];
    return h('option', { value: v, selected: v === value }, text);
  }));
}

/** A message box; `error` may be an ApiError (see api.js). */
export function message(kind, text) {
  return h('div', { class: `message ${kind}`, role: kind === 'info' ? 'status' : 'alert' }, text);
}

export function errorMessage(error) {
  if (error && error.status === 403) {
    return message('forbidden', `Not allowed (403): ${error.message}`);
  }
  return message('error', error && error.message ? error.message : String(error));
}

/** Runs fn, showing its failure in `slot` (cleared first). */
export async function attempt(slot, fn) {
  clear(slot);
  try {
    return await fn();
  } catch (error) {
    clear(slot, errorMessage(error));
    return undefined;
  }
}

/** A modal <dialog> holding `content`; returns {dialog, close}. */
export function modal(title, content) {
  const dialog = h('dialog', { 'aria-label': title }, h('h2', {}, title), content);
  document.body.append(dialog);
  dialog.addEventListener('close', () => dialog.remove());
  dialog.showModal();
  return { dialog, close: () => dialog.close() };
}

/** The form's fields as {name: trimmed string}, empty strings left out. */
export function formValues(form) {
  const out = {};
  for (const [name, value] of new FormData(form).entries()) {
    const text = String(value).trim();
    if (text !== '') out[name] = text;
  }
  return out;
}

/**
 * For an edit form: drops from `body` what the operator did not change, so
 * a save never rewrites (or, by rounding, shifts) untouched settings.
 * `initial` is formValues(form) taken when the form was built; `sources`
 * maps a body field to the form fields it comes from (default: its name).
 */
export function onlyChanged(body, values, initial, sources = {}) {
  const changed = name => (values[name] ?? '') !== (initial[name] ?? '');
  for (const name of Object.keys(body)) {
    if (!(sources[name] || [name]).some(changed)) delete body[name];
  }
  return body;
}

/** formValues plus each checkbox as 'on' / '' (FormData leaves unchecked ones out). */
export function formState(form) {
  const values = formValues(form);
  for (const box of form.querySelectorAll('input[type=checkbox]')) values[box.name] = box.checked ? 'on' : '';
  return values;
}

export function badge(state) {
  return h('span', { class: `badge ${state}` }, String(state).replace('_', ' '));
}

export function copyButton(text) {
  const button = h('button', { type: 'button', class: 'small' }, 'Copy');
  button.addEventListener('click', async () => {
    try {
      await navigator.clipboard.writeText(text);
      button.textContent = 'Copied';
    } catch {
      button.textContent = 'Select and copy by hand';
    }
  });
  return button;
}

/** A secret shown once, with a copy button. */
export function secretBox(label, secret) {
  return h('div', { class: 'message info', role: 'status' },
    h('p', {}, label, ' It is shown only this once.'),
    h('div', { class: 'secret' }, h('code', { 'data-secret': 'token' }, secret), copyButton(secret)));
}

// Formatting.
export const num = v => (v === null || v === undefined ? '–' : Number(v).toLocaleString('en-US'));
export function usd(v) {
  if (v === null || v === undefined) return '–';
  const abs = Math.abs(Number(v));
  return `${v < 0 ? '-' : ''}$${abs.toFixed(abs < 1 && abs !== 0 ? 4 : 2)}`;
}
export const pct = v => (v === null || v === undefined ? '–' : `${(v * 100).toFixed(1)}%`);
export const ms = v => (v === null || v === undefined ? '–' : `${Math.round(v)} ms`);
export function time(seconds) {
  if (seconds === null || seconds === undefined) return '–';
  return new Date(seconds * 1000).toLocaleString();
}
export function nanosToUsd(nanos) {
  return nanos === null || nanos === undefined ? null : nanos / 1e9;
}
