// The operation log: who changed what through the admin API.
import { h, clear, table, field, input, num, attempt, formValues } from '../dom.js';
import { get, query } from '../api.js';

const PAGE = 50;

export async function render(main) {
  const status = h('div', { 'aria-live': 'polite' });
  const list = h('div');
  const pager = h('div', { class: 'pager' });
  let offset = 0;
  const form = h('form', { class: 'row', on: { submit: event => { event.preventDefault(); offset = 0; load(); } } },
    field('Actor', input('actor')), field('Action', input('action', { placeholder: 'token.create' })),
    h('button', { type: 'submit', class: 'primary' }, 'Filter'));
  clear(main, h('h1', {}, 'Operation log'), h('div', { class: 'panel' }, form), status, list, pager);

  async function load() {
    const v = formValues(form);
    await attempt(status, async () => {
      const page = await get(`/admin/operation-logs${query({ actor: v.actor, action: v.action, limit: PAGE, offset })}`);
      const json = value => (value === null || value === undefined ? '–' : h('details', {}, h('summary', {}, 'show'), h('pre', {}, JSON.stringify(value, null, 2))));
      clear(list, table([
        { label: 'When', value: r => new Date(r.created_at_ms).toLocaleString() },
        { label: 'Actor', value: r => h('span', { class: 'mono' }, r.actor) },
        { label: 'Action', value: r => r.action },
        { label: 'Target', value: r => r.target },
        { label: 'Before', value: r => json(r.before) },
        { label: 'After', value: r => json(r.after) },
      ], page.data, { empty: 'No operations.', label: 'Operation log' }));
      const last = Math.min(offset + PAGE, page.total);
      clear(pager,
        h('button', { type: 'button', disabled: offset === 0, on: { click: () => { offset = Math.max(0, offset - PAGE); load(); } } }, 'Previous'),
        h('span', { class: 'muted' }, page.total ? `${offset + 1}–${last} of ${num(page.total)}` : ''),
        h('button', { type: 'button', disabled: last >= page.total, on: { click: () => { offset += PAGE; load(); } } }, 'Next'));
    });
  }
  await load();
}
