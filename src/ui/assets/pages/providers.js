// Providers and keys: each provider with its keys' live health (polled every
// few seconds); add, enable, disable and remove keys; add and edit providers;
// redirects; refresh a provider's model list.
import { h, clear, table, badge, field, input, select, ms, num, attempt, modal, formValues, formState, onlyChanged, message, errorMessage } from '../dom.js';
import { get, post, patch, put, del, enc } from '../api.js';

const POLL_MS = 3000;
// `echo` is the offline demo kind: answered in-process, it has no base URL
// (the server refuses a missing one for every other kind).
const KINDS = ['openai', 'openai-compatible', 'azure-openai', 'anthropic', 'gemini', 'zhipu', 'echo'];

export async function render(main) {
  const status = h('div', { 'aria-live': 'polite' });
  const list = h('div');
  const redirects = h('div', { class: 'panel' });
  clear(main,
    h('h1', {}, 'Providers and keys'),
    h('div', { class: 'row' },
      h('button', { type: 'button', class: 'primary', on: { click: () => providerDialog(null, reload) } }, 'Add provider'),
      h('span', { class: 'muted' }, `Key health refreshes every ${POLL_MS / 1000} s.`)),
    status, list,
    h('h2', {}, 'Redirects'), redirects);

  const panels = new Map();

  async function reload() {
    await attempt(status, async () => {
      const providers = (await get('/admin/providers')).data;
      clear(list);
      panels.clear();
      if (!providers.length) list.append(h('p', { class: 'muted' }, 'No providers yet.'));
      for (const provider of providers) {
        const health = h('div');
        panels.set(provider.name, health);
        list.append(providerPanel(provider, health, reload, status));
      }
      await refreshHealth();
    });
    await loadRedirects(redirects);
  }

  async function refreshHealth() {
    await Promise.all([...panels.entries()].map(async ([name, slot]) => {
      try {
        const health = await get(`/admin/providers/${enc(name)}/health`);
        clear(slot, keysTable(name, health, reload, status));
      } catch (error) {
        clear(slot, errorMessage(error));
      }
    }));
  }

  await reload();
  const timer = setInterval(refreshHealth, POLL_MS);
  return () => clearInterval(timer);
}

function providerPanel(provider, healthSlot, reload, status) {
  return h('section', { class: 'panel', 'aria-label': `Provider ${provider.name}` },
    h('div', { class: 'row' },
      h('h2', {}, provider.name),
      badge(provider.enabled ? (provider.running ? 'enabled' : 'not_running') : 'disabled'),
      h('span', { class: 'muted' }, `${provider.kind} · ${provider.base_url || 'in-process'}`)),
    h('p', {}, h('span', { class: 'muted' }, 'Models: '), (provider.models || []).join(', ') || '–'),
    h('div', { class: 'actions' },
      h('button', { type: 'button', class: 'small', on: { click: () => addKeyDialog(provider.name, reload) } }, 'Add key'),
      h('button', { type: 'button', class: 'small', on: { click: () => editProvider(provider.name, reload) } }, 'Edit'),
      h('button', {
        type: 'button', class: 'small',
        on: { click: () => attempt(status, async () => {
          const answer = await post(`/admin/models/${enc(provider.name)}/refresh`);
          clear(status, message('info', `${provider.name}: ${(answer.models || []).length} models fetched.`));
        }) },
      }, 'Refresh models'),
      h('button', {
        type: 'button', class: 'small danger',
        on: { click: () => confirm(`Remove provider ${provider.name} and its keys?`) && attempt(status, async () => { await del(`/admin/providers/${enc(provider.name)}`); await reload(); }) },
      }, 'Remove provider')),
    healthSlot);
}

function keysTable(provider, health, reload, status) {
  const act = (key, fn) => attempt(status, async () => { await fn(); await reload(); });
  const base = id => `/admin/providers/${enc(provider)}/keys/${enc(id)}`;
  return table([
    { label: 'Key', value: k => h('span', { class: 'mono' }, k.id) },
    { label: 'Secret', value: k => h('span', { class: 'mono' }, k.secret_hint) },
    { label: 'State', value: k => badge(k.state) },
    {
      label: 'Detail',
      value: k => k.disabled_reason
        ? `disabled: ${k.disabled_reason}`
        : k.cooldown_remaining_ms
          ? `${k.state === 'open' ? 'circuit open' : 'cooling down'} until ${new Date(Date.now() + k.cooldown_remaining_ms).toLocaleTimeString()}`
          : '',
    },
    { label: 'In flight', value: k => num(k.in_flight) },
    { label: 'Latency', value: k => ms(k.latency_ewma_ms) },
    { label: 'OK / failed', value: k => `${num(k.successes)} / ${num(k.failures)}` },
    { label: 'Weight', value: k => k.weight },
    {
      label: 'Actions',
      value: k => h('div', { class: 'actions' },
        k.enabled
          ? h('button', {
            type: 'button', class: 'small', 'aria-label': `Disable key ${k.id}`,
            on: { click: () => { const reason = prompt(`Why disable ${k.id}? (optional)`); if (reason !== null) act(k, () => post(`${base(k.id)}/disable`, reason ? { reason } : {})); } },
          }, 'Disable')
          : h('button', { type: 'button', class: 'small', 'aria-label': `Enable key ${k.id}`, on: { click: () => act(k, () => post(`${base(k.id)}/enable`)) } }, 'Enable'),
        h('button', {
          type: 'button', class: 'small danger', 'aria-label': `Remove key ${k.id}`,
          on: { click: () => confirm(`Remove key ${k.id}?`) && act(k, () => del(base(k.id))) },
        }, 'Remove')),
    },
  ], health.keys, { empty: 'No keys.', label: `Keys of ${provider}` });
}

function addKeyDialog(provider, reload) {
  const error = h('div');
  const form = h('form', {
    method: 'dialog',
    on: {
      submit: async event => {
        event.preventDefault();
        const values = formValues(form);
        const body = { key: values.key || '' };
        if (values.id) body.id = values.id;
        if (values.weight) body.weight = Number(values.weight);
        const ok = await attempt(error, async () => { await post(`/admin/providers/${enc(provider)}/keys`, body); return true; });
        if (ok) { dialog.close(); reload(); }
      },
    },
  },
  field('API key (stored encrypted, never shown again)', input('key', { type: 'password', required: true, autocomplete: 'off' })),
  field('Key id (optional)', input('id')),
  field('Weight', input('weight', { type: 'number', min: 1, value: 1 })),
  error,
  h('div', { class: 'actions' }, h('button', { type: 'submit', class: 'primary' }, 'Add key'), h('button', { type: 'button', on: { click: () => dialog.close() } }, 'Cancel')));
  const { dialog } = modal(`Add a key to ${provider}`, form);
}

async function editProvider(name, reload) {
  const current = await get(`/admin/providers/${enc(name)}`);
  providerDialog(current, reload);
}

/** Add (current = null) or edit a provider. */
function providerDialog(current, reload) {
  const error = h('div');
  const editing = Boolean(current);
  const form = h('form', {
    method: 'dialog',
    on: {
      submit: async event => {
        event.preventDefault();
        const v = formState(form);
        const body = {
          kind: v.kind,
          base_url: v.base_url || '',
          models: (v.models || '').split(',').map(s => s.trim()).filter(Boolean),
          weight: Number(v.weight || 1),
          enabled: form.elements.enabled.checked,
        };
        if (v.strategy) body.strategy = v.strategy;
        const ok = await attempt(error, async () => {
          if (editing) {
            // Unchanged connection settings must not restart the provider.
            onlyChanged(body, v, initial);
            if (Object.keys(body).length) await patch(`/admin/providers/${enc(current.name)}`, body);
          } else {
            body.name = v.name || '';
            if (v.key) body.keys = [{ key: v.key }];
            await post('/admin/providers', body);
          }
          return true;
        });
        if (ok) { dialog.close(); reload(); }
      },
    },
  },
  editing ? null : field('Name', input('name', { required: true })),
  field('Kind', select('kind', KINDS, current ? current.kind : 'openai-compatible')),
  field('Base URL', input('base_url', { value: current ? current.base_url : '', placeholder: 'https://api.openai.com/v1 (none for echo)' })),
  field('Models (comma separated)', input('models', { value: current ? (current.models || []).join(', ') : '' })),
  field('Key strategy', select('strategy', ['', 'round-robin', 'first-available', 'random', 'weighted', 'least-in-flight', 'latency'], current ? current.strategy || '' : '')),
  field('Weight', input('weight', { type: 'number', min: 1, value: current ? current.weight : 1 })),
  h('label', { class: 'inline' }, input('enabled', { type: 'checkbox', checked: current ? current.enabled : true }), 'Enabled'),
  editing ? null : field('First API key (optional)', input('key', { type: 'password', autocomplete: 'off' })),
  error,
  h('div', { class: 'actions' }, h('button', { type: 'submit', class: 'primary' }, editing ? 'Save' : 'Add provider'), h('button', { type: 'button', on: { click: () => dialog.close() } }, 'Cancel')));
  const initial = formState(form);
  const { dialog } = modal(editing ? `Edit ${current.name}` : 'Add a provider', form);
}

async function loadRedirects(panel) {
  const error = h('div');
  const form = h('form', {
    class: 'row',
    on: {
      submit: async event => {
        event.preventDefault();
        const v = formValues(form);
        const ok = await attempt(error, async () => { await put(`/admin/redirects/${enc(v.from || '')}`, { to: v.to || '' }); return true; });
        if (ok) loadRedirects(panel);
      },
    },
  }, field('From model', input('from', { required: true })), field('To model', input('to', { required: true })), h('button', { type: 'submit' }, 'Set redirect'));
  try {
    const rows = (await get('/admin/redirects')).data;
    clear(panel, table([
      { label: 'From', value: r => r.from },
      { label: 'To', value: r => r.to },
      { label: '', value: r => h('button', { type: 'button', class: 'small danger', on: { click: () => attempt(error, async () => { await del(`/admin/redirects/${enc(r.from)}`); loadRedirects(panel); }) } }, 'Remove') },
    ], rows, { empty: 'No redirects.', label: 'Redirects' }), form, error);
  } catch (e) {
    clear(panel, errorMessage(e));
  }
}
