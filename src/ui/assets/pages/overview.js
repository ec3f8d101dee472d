// Overview: requests, success rate, latency, time to first token, tokens
// and cost over a range, as cards and time-series charts; the top models,
// tokens and providers by spend; unpriced models and failing keys.
import { h, clear, table, num, usd, pct, ms, errorMessage, select, field, badge } from '../dom.js';
import { get, query, ApiError, enc } from '../api.js';
import { timeChart } from '../chart.js';

const RANGES = { hour: 3600, day: 86400, week: 7 * 86400 };

export async function render(main) {
  const charts = [];
  const rangeSelect = select('range', [['hour', 'Last hour'], ['day', 'Last day'], ['week', 'Last week']], 'day');
  const body = h('div');
  clear(main,
    h('h1', {}, 'Overview'),
    h('div', { class: 'row' }, field('Range', rangeSelect)),
    body);

  async function load() {
    charts.splice(0).forEach(chart => chart && chart.destroy());
    clear(body, h('p', { class: 'muted' }, 'Loading…'));
    const span = RANGES[rangeSelect.value];
    const to = Math.floor(Date.now() / 1000) + 1;
    const from = to - span;
    const range = query({ from, to });
    try {
      const [summary, series, models, unpriced, providers] = await Promise.all([
        get(`/admin/metrics/summary${range}`),
        get(`/admin/metrics/timeseries${query({ from, to, bucket: span > 2 * 86400 ? 'day' : 'hour' })}`),
        get(`/admin/metrics/models-distribution${range}`),
        get('/admin/unpriced-models'),
        get('/admin/providers'),
      ]);
      clear(body);
      body.append(cards(summary));
      const chartBox = h('div', { class: 'charts' });
      body.append(h('h2', {}, 'Over time'), chartBox);
      const times = series.data.map(p => p.start);
      charts.push(
        timeChart(chartBox, 'Requests and errors', times, [
          { label: 'requests', values: series.data.map(p => p.requests) },
          { label: 'errors', values: series.data.map(p => p.errors) },
        ]),
        timeChart(chartBox, 'Success rate', times, [
          { label: 'success %', values: series.data.map(p => (p.requests ? (100 * (p.requests - p.errors)) / p.requests : null)) },
        ], { unit: '%', range: [0, 100] }),
        timeChart(chartBox, 'Latency', times, [
          { label: 'p50 ms', values: series.data.map(p => p.p50_latency_ms) },
          { label: 'p99 ms', values: series.data.map(p => p.p99_latency_ms) },
        ], { unit: ' ms' }),
        timeChart(chartBox, 'Time to first token (streams)', times, [
          { label: 'p50 ms', values: series.data.map(p => p.p50_ttft_ms) },
          { label: 'p99 ms', values: series.data.map(p => p.p99_ttft_ms) },
        ], { unit: ' ms' }),
        timeChart(chartBox, 'Tokens', times, [{ label: 'tokens', values: series.data.map(p => p.tokens) }]),
        timeChart(chartBox, 'Cost (USD)', times, [{ label: 'cost', values: series.data.map(p => p.cost_usd) }]),
      );
      body.append(h('p', { class: 'muted' }, `Buckets of one ${series.bucket} (UTC).`));

      const tops = h('div', { class: 'columns' });
      body.append(h('h2', {}, 'Top by spend'), tops);
      const byCost = [...models.data].sort((a, b) => b.cost_nanos - a.cost_nanos || b.requests - a.requests).slice(0, 10);
      tops.append(h('div', { class: 'panel' }, h('h3', {}, 'Models'), table([
        { label: 'Model', value: r => r.model || '–' },
        { label: 'Requests', value: r => num(r.requests) },
        { label: 'Tokens', value: r => num(r.total_tokens) },
        { label: 'Cost', value: r => usd(r.cost_usd) },
      ], byCost, { empty: 'No requests in this range.', label: 'Top models' })));
      for (const [by, title] of [['token', 'Tokens'], ['provider', 'Providers']]) {
        tops.append(await topPanel(by, title, rangeSelect.value));
      }

      body.append(h('h2', {}, 'Needs attention'));
      const attention = h('div', { class: 'columns' });
      body.append(attention);
      attention.append(h('div', { class: 'panel' }, h('h3', {}, 'Unpriced models'),
        unpriced.data.length
          ? table([
            { label: 'Model', value: r => r.model },
            { label: 'Requests', value: r => num(r.requests) },
            { label: '', value: () => h('a', { href: '#/prices' }, 'Set a price') },
          ], unpriced.data, { label: 'Unpriced models' })
          : h('p', { class: 'ok' }, 'Every model served has a price.')));
      attention.append(await failingKeys(providers.data));
    } catch (error) {
      if (!(error instanceof ApiError && error.status === 401)) clear(body, errorMessage(error));
    }
  }

  rangeSelect.addEventListener('change', load);
  await load();
  return () => charts.forEach(chart => chart && chart.destroy());
}

function cards(s) {
  const card = (label, value, cls) => h('div', { class: 'card', role: 'group', 'aria-label': label }, h('div', { class: 'label' }, label), h('div', { class: `value ${cls || ''}` }, value));
  const rateClass = s.success_rate === null ? '' : s.success_rate >= 0.99 ? 'ok' : s.success_rate >= 0.9 ? 'warn' : 'bad';
  return h('div', { class: 'grid', 'aria-label': 'Totals' },
    card('Requests', num(s.requests)),
    card('Success rate', pct(s.success_rate), rateClass),
    card('Errors (4xx / 5xx)', `${num(s.errors['4xx'])} / ${num(s.errors['5xx'])}`),
    card('Latency p50', ms(s.latency_ms.p50)),
    card('Latency p99', ms(s.latency_ms.p99)),
    card('Time to first token p50', ms(s.ttft_ms.p50)),
    card('Time to first token p99', ms(s.ttft_ms.p99)),
    card('Tokens (in / out)', `${num(s.prompt_tokens)} / ${num(s.completion_tokens)}`),
    card('Cost', usd(s.cost_usd)),
    card('Unpriced requests', num(s.unpriced_requests), s.unpriced_requests ? 'warn' : ''),
    // Media units (images, speech, audio, rerank), on top of the tokens:
    // a card only when the range used some.
    ...mediaCards(s, card));
}

function mediaCards(s, card) {
  return [
    ['Images', s.images, n => num(n)],
    ['Speech characters', s.characters, n => num(n)],
    ['Audio transcribed', s.audio_ms, n => `${num(Math.round(n / 1000))} s`],
    ['Rerank search units', s.search_units, n => num(n)],
  ].filter(([, n]) => n > 0).map(([label, n, show]) => card(label, show(n)));
}

/** Top tokens or providers by spend over the last hour, day or week (the
 * route's own ranges, served from the hourly rollups). */
async function topPanel(by, title, range) {
  const panel = h('div', { class: 'panel' }, h('h3', {}, title));
  try {
    const top = await get(`/admin/metrics/top${query({ by, range, limit: 10 })}`);
    panel.append(table([
      { label: by === 'token' ? 'Token' : 'Provider', value: r => r.name || (r.token_id !== undefined ? `#${r.token_id}` : '–') },
      { label: 'Requests', value: r => num(r.requests) },
      { label: 'Tokens', value: r => num((r.prompt_tokens || 0) + (r.completion_tokens || 0)) },
      { label: 'Cost', value: r => usd(typeof r.cost === 'number' ? r.cost : r.cost_usd) },
    ], top.items || [], { empty: 'No requests in this range.', label: `Top ${title.toLowerCase()}` }));
  } catch (error) {
    if (error instanceof ApiError && error.status === 404) {
      panel.append(h('p', { class: 'muted' }, 'Not available on this server (needs /admin/metrics/top).'));
    } else {
      panel.append(errorMessage(error));
    }
  }
  return panel;
}

async function failingKeys(providers) {
  const panel = h('div', { class: 'panel' }, h('h3', {}, 'Keys not healthy'));
  const rows = [];
  const healths = await Promise.all(providers.map(p => get(`/admin/providers/${enc(p.name)}/health`).catch(() => null)));
  healths.forEach((health, i) => {
    if (!health) return;
    for (const key of health.keys) {
      if (key.state !== 'healthy') rows.push({ provider: providers[i].name, ...key });
    }
  });
  if (!rows.length) {
    panel.append(h('p', { class: 'ok' }, 'Every key is healthy.'));
  } else {
    panel.append(table([
      { label: 'Provider', value: r => r.provider },
      { label: 'Key', value: r => r.id },
      { label: 'State', value: r => badge(r.state) },
      { label: 'Why', value: r => r.disabled_reason || (r.cooldown_remaining_ms ? `for ${Math.ceil(r.cooldown_remaining_ms / 1000)} s` : '') },
    ], rows, { label: 'Keys not healthy' }), h('a', { href: '#/providers' }, 'Go to providers'));
  }
  return panel;
}

