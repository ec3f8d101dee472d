// Request logs: filters (token, model, provider, status, time range),
// paging, and one request's details.
import { h, clear, table, field, input, select, usd, num, ms, time, attempt, formValues } from '../dom.js';
import { get, query, enc } from '../api.js';

const PAGE = 50;

export async function render(main) {
  const status = h('div', { 'aria-live': 'polite' });
  const list = h('div');
  const detail = h('div');
  const pager = h('div', { class: 'pager' });
  let offset = 0;
  const form = h('form', {
    class: 'row',
    on: { submit: event => { event.preventDefault(); offset = 0; load(); } },
  },
  field('Token id', input('token_id', { type: 'number' })),
  field('Model', input('model')),
  field('Provider', input('provider')),
  field('Status', select('status', [['', 'any'], ['2xx', '2xx'], ['4xx', '4xx'], ['5xx', '5xx'], ['429', '429'], ['499', '499']], '')),
  field('From', input('from', { type: 'datetime-local' })),
  field('To', input('to', { type: 'datetime-local' })),
  h('button', { type: 'submit', class: 'primary' }, 'Filter'));
  clear(main, h('h1', {}, 'Request logs'), h('div', { class: 'panel' }, form), status, detail, list, pager);

  async function load() {
    const v = formValues(form);
    const seconds = text => (text ? Math.floor(new Date(text).getTime() / 1000) : undefined);
    const params = {
      token_id: v.token_id, model: v.model, provider: v.provider,
      from: seconds(v.from), to: seconds(v.to), limit: PAGE, offset,
    };
    if (v.status && v.status.endsWith('xx')) params.status_class = v.status;
    else if (v.status) params.status = v.status;
    await attempt(status, async () => {
      const page = await get(`/admin/request-logs${query(params)}`);
      clear(list, table([
        { label: 'When', value: r => time(Math.floor(r.created_at / 1000)) },
        { label: 'Status', value: r => h('span', { class: r.status < 400 ? 'ok' : r.status < 500 ? 'warn' : 'bad' }, r.status) },
        { label: 'Model', value: r => r.requested_model || '–' },
        { label: 'Provider', value: r => r.provider || '–' },
        { label: 'Token', value: r => (r.token_id === null ? '–' : `#${r.token_id}`) },
        { label: 'Latency', value: r => ms(r.latency_ms) },
        { label: 'Tokens', value: r => `${num(r.prompt_tokens)} / ${num(r.completion_tokens)}` },
        { label: 'Cost', value: r => usd(r.cost_nanos / 1e9) },
        { label: 'Attempts', value: r => r.attempts },
      ], page.data, { empty: 'No request matches.', label: 'Request logs', onRow: r => showDetail(detail, r.id) }));
      const last = Math.min(offset + PAGE, page.total);
      clear(pager,
        h('button', { type: 'button', disabled: offset === 0, on: { click: () => { offset = Math.max(0, offset - PAGE); load(); } } }, 'Previous'),
        h('span', { class: 'muted' }, page.total ? `${offset + 1}–${last} of ${num(page.total)}` : ''),
        h('button', { type: 'button', disabled: last >= page.total, on: { click: () => { offset += PAGE; load(); } } }, 'Next'));
    });
  }
  await load();
}

async function showDetail(slot, id) {
  await attempt(slot, async () => {
    const r = await get(`/admin/request-logs/${enc(id)}`);
    const upstream = r.ttft_ms === null ? null : r.ttft_ms;
    clear(slot, h('section', { class: 'panel', 'aria-label': 'Request details' },
      h('h2', {}, `Request ${r.request_id}`),
      table([{ label: 'Field', value: x => x[0] }, { label: 'Value', value: x => x[1] }], [
        ['Time', new Date(r.created_at).toLocaleString()],
        ['Endpoint', r.endpoint],
        ['Status', `${r.status}${r.error_class ? ` (${r.error_class})` : ''}`],
        ['Requested model', r.requested_model || '–'],
        ['Upstream model', r.upstream_model || '–'],
        ['Provider', r.provider || '–'],
        ['Key (last tried)', r.key_id || '–'],
        ['Attempts', r.attempts],
        ['Latency (total)', ms(r.latency_ms)],
        ['Time to first token', ms(upstream)],
        ['After first token', upstream === null ? '–' : ms(r.latency_ms - upstream)],
        ['Streamed', r.stream ? 'yes' : 'no'],
        ['Tokens (prompt / completion)', `${num(r.prompt_tokens)} / ${num(r.completion_tokens)}${r.tokens_estimated ? ' (estimated)' : ''}`],
        ...mediaUnits(r),
        ['Cost', `${usd(r.cost_nanos / 1e9)}${r.priced ? '' : ' (unpriced)'}`],
        ['Token / user', `${r.token_id === null ? '–' : `#${r.token_id}`} / ${r.user_id === null ? '–' : `#${r.user_id}`}`],
      ], { label: 'Request details' }),
      h('h3', {}, 'Attempts'),
      table([
        { label: '#', value: a => a.n },
        { label: 'Provider', value: a => a.provider || '–' },
        { label: 'Key', value: a => a.key_id || '–' },
        { label: 'Upstream model', value: a => a.upstream_model || '–' },
        { label: 'Outcome', value: a => h('span', { class: a.outcome === 'ok' ? 'ok' : 'bad' }, a.outcome) },
        { label: 'Started after', value: a => ms(a.started_ms) },
        { label: 'Took', value: a => ms(a.duration_ms) },
      ], (r.attempt_log || []).map((a, i) => ({ ...a, n: i + 1 })), { empty: 'The request reached no upstream.', label: 'Attempts' }),
      h('button', { type: 'button', on: { click: () => clear(slot) } }, 'Close')));
  });
}

// The media units a request was charged for, on top of its tokens: a row
// each, only those it used (a chat request shows none).
function mediaUnits(r) {
  return [
    ['Images', r.images, n => num(n)],
    ['Characters (speech)', r.characters, n => num(n)],
    ['Audio', r.audio_ms, n => `${(n / 1000).toFixed(1)} s`],
    ['Rerank search units', r.search_units, n => num(n)],
  ].filter(([, n]) => n > 0).map(([label, n, show]) => [label, show(n)]);
}
