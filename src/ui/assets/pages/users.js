// Users: balances, top-ups, price multipliers, status; billing records.
import { h, clear, table, badge, field, input, select, usd, time, attempt, modal, formValues } from '../dom.js';
import { get, post, patch, query } from '../api.js';

export async function render(main) {
  const status = h('div', { 'aria-live': 'polite' });
  const list = h('div');
  const billing = h('div');
  const billingUser = input('user_id', { type: 'number', placeholder: 'all users', 'aria-label': 'Billing records of user' });
  clear(main,
    h('h1', {}, 'Users'),
    h('div', { class: 'row' }, h('button', { type: 'button', class: 'primary', on: { click: () => createUser(reload) } }, 'Create user')),
    status, list,
    h('h2', {}, 'Billing records'),
    h('div', { class: 'row' }, field('User id', billingUser), h('button', { type: 'button', on: { click: () => loadBilling() } }, 'Show')),
    billing);

  async function reload() {
    await attempt(status, async () => {
      const users = (await get('/admin/users')).data;
      clear(list, table([
        { label: 'Id', value: u => `#${u.id}` },
        { label: 'Name', value: u => u.name },
        { label: 'Status', value: u => badge(u.status) },
        { label: 'Prepaid', value: u => (u.prepaid ? 'yes' : 'no') },
        { label: 'Balance', value: u => usd(u.balance_usd) },
        { label: 'Reserved', value: u => usd(u.reserved_usd) },
        { label: 'Multiplier', value: u => (u.price_multiplier === null ? '1 (default)' : u.price_multiplier) },
        {
          label: 'Actions',
          value: u => h('div', { class: 'actions' },
            h('button', { type: 'button', class: 'small', 'aria-label': `Top up ${u.name}`, on: { click: () => topup(u, reload) } }, 'Top up'),
            h('button', { type: 'button', class: 'small', 'aria-label': `Edit ${u.name}`, on: { click: () => editUser(u, reload) } }, 'Edit'),
            h('button', { type: 'button', class: 'small', on: { click: () => { billingUser.value = u.id; loadBilling(); } } }, 'Billing')),
        },
      ], users, { empty: 'No users yet.', label: 'Users' }));
    });
  }

  async function loadBilling() {
    await attempt(billing, async () => {
      const rows = (await get(`/admin/billing${query({ user_id: billingUser.value, limit: 100 })}`)).data;
      clear(billing, table([
        { label: 'When', value: r => time(r.created_at) },
        { label: 'Kind', value: r => r.kind },
        { label: 'User', value: r => (r.user_id === null ? '–' : `#${r.user_id}`) },
        { label: 'Token', value: r => (r.token_id === null ? '–' : `#${r.token_id}`) },
        { label: 'Model', value: r => r.model || '–' },
        { label: 'Amount', value: r => usd(r.amount_usd) },
        { label: 'Note', value: r => r.note || '' },
      ], rows, { empty: 'No billing records.', label: 'Billing records' }));
    });
  }

  await reload();
  await loadBilling();
}

function dialogForm(title, fields, submit) {
  const error = h('div');
  const form = h('form', {
    method: 'dialog',
    on: {
      submit: async event => {
        event.preventDefault();
        const ok = await attempt(error, async () => { await submit(formValues(form), form); return true; });
        if (ok) dialog.close();
      },
    },
  }, fields, error, h('div', { class: 'actions' }, h('button', { type: 'submit', class: 'primary' }, 'Save'), h('button', { type: 'button', on: { click: () => dialog.close() } }, 'Cancel')));
  const { dialog } = modal(title, form);
}

function createUser(reload) {
  dialogForm('Create a user', [
    field('Name', input('name', { required: true })),
    h('label', { class: 'inline' }, input('prepaid', { type: 'checkbox' }), 'Prepaid (requests draw on the balance)'),
    field('Opening balance (USD)', input('balance_usd', { type: 'number', step: 'any', min: 0 })),
    field('Price multiplier', input('price_multiplier', { type: 'number', step: 'any', min: 0 })),
  ], async (v, form) => {
    const body = { name: v.name || '', prepaid: form.elements.prepaid.checked };
    if (v.balance_usd) body.balance_usd = Number(v.balance_usd);
    if (v.price_multiplier) body.price_multiplier = Number(v.price_multiplier);
    await post('/admin/users', body);
    reload();
  });
}

function topup(user, reload) {
  dialogForm(`Top up ${user.name}`, [
    field('Amount (USD)', input('amount_usd', { type: 'number', step: 'any', required: true })),
    field('Note', input('note')),
  ], async v => {
    await post(`/admin/users/${user.id}/topup`, { amount_usd: Number(v.amount_usd), ...(v.note ? { note: v.note } : {}) });
    reload();
  });
}

function editUser(user, reload) {
  dialogForm(`Edit ${user.name}`, [
    field('Name', input('name', { value: user.name })),
    field('Status', select('status', ['active', 'suspended'], user.status)),
    h('label', { class: 'inline' }, input('prepaid', { type: 'checkbox', checked: user.prepaid }), 'Prepaid'),
    field('Price multiplier (empty = default)', input('price_multiplier', { type: 'number', step: 'any', min: 0, value: user.price_multiplier ?? '' })),
  ], async (v, form) => {
    await patch(`/admin/users/${user.id}`, {
      name: v.name || user.name,
      status: v.status,
      prepaid: form.elements.prepaid.checked,
      price_multiplier: v.price_multiplier ? Number(v.price_multiplier) : null,
    });
    reload();
  });
}
