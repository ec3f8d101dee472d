// Gateway tokens: list with search, spend against budget, create (every
// limit; the secret shown once with a copy button), edit limits, disable,
// rotate with a grace period, delete.
import { h, clear, table, badge, field, input, select, usd, num, time, attempt, modal, formValues, secretBox, onlyChanged } from '../dom.js';
import { get, post, patch, del } from '../api.js';

export async function render(main) {
  const status = h('div', { 'aria-live': 'polite' });
  const errors = h('div');
  const search = input('search', { type: 'search', placeholder: 'name or prefix', 'aria-label': 'Search tokens' });
  const list = h('div');
  let tokens = [];
  clear(main,
    h('h1', {}, 'Tokens'),
    h('div', { class: 'row' },
      field('Search', search),
      h('button', { type: 'button', class: 'primary', on: { click: () => tokenDialog(null, reload, status) } }, 'Create token')),
    status, errors, list);

  function draw() {
    const needle = search.value.trim().toLowerCase();
    const shown = tokens.filter(t => !needle || t.name.toLowerCase().includes(needle) || (t.prefix || '').toLowerCase().includes(needle));
    clear(list, table([
      { label: 'Name', value: t => t.name },
      { label: 'Prefix', value: t => h('span', { class: 'mono' }, t.prefix) },
      { label: 'State', value: t => badge(t.enabled ? (t.expires_at && t.expires_at * 1000 < Date.now() ? 'expired' : 'active') : 'disabled') },
      { label: 'User', value: t => (t.user_id === null ? '–' : `#${t.user_id}`) },
      { label: 'Spend / budget', value: spendBar },
      { label: 'Requests', value: t => num(t.request_count) },
      { label: 'Limits', value: limitsText },
      { label: 'Last used', value: t => time(t.last_used_at) },
      {
        label: 'Actions',
        value: t => h('div', { class: 'actions' },
          h('button', { type: 'button', class: 'small', 'aria-label': `Edit ${t.name}`, on: { click: () => tokenDialog(t, reload, status) } }, 'Edit'),
          h('button', {
            type: 'button', class: 'small', 'aria-label': `${t.enabled ? 'Disable' : 'Enable'} ${t.name}`,
            on: { click: () => attempt(errors, async () => { await post(`/admin/tokens/${t.id}/${t.enabled ? 'disable' : 'enable'}`); await reload(); }) },
          }, t.enabled ? 'Disable' : 'Enable'),
          h('button', { type: 'button', class: 'small', 'aria-label': `Rotate ${t.name}`, on: { click: () => rotate(t, reload, status) } }, 'Rotate'),
          h('button', {
            type: 'button', class: 'small danger', 'aria-label': `Delete ${t.name}`,
            on: { click: () => confirm(`Delete token ${t.name}? Clients using it stop working.`) && attempt(errors, async () => { await del(`/admin/tokens/${t.id}`); await reload(); }) },
          }, 'Delete')),
      },
    ], shown, { empty: needle ? 'No token matches.' : 'No tokens yet.', label: 'Tokens' }));
  }

  // Errors go to their own slot: `status` may hold a secret shown once.
  async function reload() {
    await attempt(errors, async () => {
      const answer = await get('/admin/tokens');
      tokens = answer.data || answer;
      draw();
    });
  }

  search.addEventListener('input', draw);
  await reload();
}

/** `datetime-local` text of unix seconds, in local time. */
function localInput(seconds) {
  if (!seconds) return '';
  const d = new Date(seconds * 1000);
  const pad = n => String(n).padStart(2, '0');
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}T${pad(d.getHours())}:${pad(d.getMinutes())}`;
}

function spendBar(t) {
  const spent = t.spent_usd || 0;
  if (t.budget_usd === null || t.budget_usd === undefined) return `${usd(spent)} (no budget)`;
  return h('span', {},
    h('progress', { max: t.budget_usd || 1, value: Math.min(spent, t.budget_usd), 'aria-label': `Spend of ${t.name}` }),
    ` ${usd(spent)} of ${usd(t.budget_usd)}`);
}

function limitsText(t) {
  const parts = [];
  if (t.rpm) parts.push(`${t.rpm} rpm`);
  if (t.tpm) parts.push(`${t.tpm} tpm`);
  if (t.max_parallel) parts.push(`${t.max_parallel} parallel`);
  if (t.budget_tokens) parts.push(`${num(t.budget_tokens)} tokens`);
  for (const q of t.quotas || []) parts.push(`${q.limit ?? q.limit_usd} ${q.kind}/${q.period}`);
  if (t.allowed_models) parts.push(`models: ${t.allowed_models.join(', ')}`);
  return parts.join(' · ') || '–';
}

const numberOrNull = text => (text === undefined ? null : Number(text));

/** Create (token = null) or edit a token's limits. */
function tokenDialog(token, reload, status) {
  const error = h('div');
  const editing = Boolean(token);
  const quota = token && token.quotas && token.quotas[0];
  const form = h('form', {
    method: 'dialog',
    on: {
      submit: async event => {
        event.preventDefault();
        const v = formValues(form);
        const body = {
          name: v.name || '',
          user_id: numberOrNull(v.user_id),
          allowed_models: v.allowed_models ? v.allowed_models.split(',').map(s => s.trim()).filter(Boolean) : null,
          budget_usd: numberOrNull(v.budget_usd),
          budget_tokens: numberOrNull(v.budget_tokens),
          rpm: numberOrNull(v.rpm),
          tpm: numberOrNull(v.tpm),
          max_parallel: numberOrNull(v.max_parallel),
          price_multiplier: numberOrNull(v.price_multiplier),
          expires_at: v.expires_at ? Math.floor(new Date(v.expires_at).getTime() / 1000) : null,
          quotas: v.quota_limit ? [{ period: v.quota_period, kind: v.quota_kind, ...(v.quota_kind === 'cost' ? { limit_usd: Number(v.quota_limit) } : { limit: Number(v.quota_limit) }) }] : (editing ? null : undefined),
        };
        if (!editing) {
          for (const name of Object.keys(body)) if (body[name] === null || body[name] === undefined) delete body[name];
        } else {
          onlyChanged(body, v, initial, { quotas: ['quota_limit', 'quota_kind', 'quota_period'] });
          if (!Object.keys(body).length) { dialog.close(); return; }
        }
        const created = await attempt(error, () => (editing ? patch(`/admin/tokens/${token.id}`, body) : post('/admin/tokens', body)));
        if (created) {
          dialog.close();
          if (!editing) status.replaceChildren(secretBox(`Token ${created.name} created. Its secret:`, created.token));
          reload();
        }
      },
    },
  },
  field('Name', input('name', { required: true, value: token ? token.name : '' })),
  h('div', { class: 'row' },
    field('Owner user id', input('user_id', { type: 'number', value: token ? token.user_id : '' })),
    field('Allowed models (comma separated, empty = all)', input('allowed_models', { value: token && token.allowed_models ? token.allowed_models.join(', ') : '' }))),
  h('div', { class: 'row' },
    field('Budget (USD)', input('budget_usd', { type: 'number', step: 'any', min: 0, value: token ? token.budget_usd : '' })),
    field('Budget (tokens)', input('budget_tokens', { type: 'number', min: 0, value: token ? token.budget_tokens : '' })),
    field('Price multiplier', input('price_multiplier', { type: 'number', step: 'any', min: 0, value: token ? token.price_multiplier : '' }))),
  h('div', { class: 'row' },
    field('Requests per minute', input('rpm', { type: 'number', min: 1, value: token ? token.rpm : '' })),
    field('Tokens per minute', input('tpm', { type: 'number', min: 1, value: token ? token.tpm : '' })),
    field('Max parallel', input('max_parallel', { type: 'number', min: 1, value: token ? token.max_parallel : '' }))),
  h('div', { class: 'row' },
    field('Quota', input('quota_limit', { type: 'number', step: 'any', min: 0, value: quota ? quota.limit ?? quota.limit_usd : '' })),
    field('Quota kind', select('quota_kind', ['requests', 'tokens', 'cost'], quota ? quota.kind : 'requests')),
    field('Quota period', select('quota_period', ['minute', 'hour', 'day', 'month'], quota ? quota.period : 'day'))),
  field('Expires', input('expires_at', { type: 'datetime-local', value: token ? localInput(token.expires_at) : '' })),
  h('p', { class: 'muted' }, editing ? 'Only the fields you change are saved; emptying one lifts that limit.' : 'Empty fields mean no limit.'),
  token && token.quotas && token.quotas.length > 1
    ? h('p', { class: 'warn' }, `This token has ${token.quotas.length} quotas; the first is shown, and changing it replaces them all.`)
    : null,
  error,
  h('div', { class: 'actions' }, h('button', { type: 'submit', class: 'primary' }, editing ? 'Save limits' : 'Create'), h('button', { type: 'button', on: { click: () => dialog.close() } }, 'Cancel')));
  const initial = formValues(form);
  const { dialog } = modal(editing ? `Edit ${token.name}` : 'Create a token', form);
}

function rotate(token, reload, status) {
  const error = h('div');
  const form = h('form', {
    method: 'dialog',
    on: {
      submit: async event => {
        event.preventDefault();
        const v = formValues(form);
        const rotated = await attempt(error, () => post(`/admin/tokens/${token.id}/rotate`, { grace_seconds: Number(v.grace_seconds || 0) }));
        if (rotated) {
          dialog.close();
          status.replaceChildren(secretBox(`Token ${token.name} rotated. Its new secret:`, rotated.token));
          reload();
        }
      },
    },
  },
  field('Grace period for the old secret (seconds)', input('grace_seconds', { type: 'number', min: 0, value: 3600 })),
  error,
  h('div', { class: 'actions' }, h('button', { type: 'submit', class: 'primary' }, 'Rotate'), h('button', { type: 'button', on: { click: () => dialog.close() } }, 'Cancel')));
  const { dialog } = modal(`Rotate ${token.name}`, form);
}
