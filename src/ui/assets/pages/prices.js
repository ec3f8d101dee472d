// Model prices (USD per million tokens, per call; prompt-cache reads and
// writes and reasoning tokens at their own rates when set; media units per
// image, million characters, second of audio and search unit, on top of
// the tokens) and the models served without one.
import { h, clear, table, field, input, usd, num, time, attempt, formValues } from '../dom.js';
import { get, put, del, enc } from '../api.js';

export async function render(main) {
  const status = h('div', { 'aria-live': 'polite' });
  const prices = h('div');
  const unpriced = h('div');
  const form = h('form', {
    class: 'row',
    on: {
      submit: async event => {
        event.preventDefault();
        const v = formValues(form);
        await attempt(status, async () => {
          await put(`/admin/model-prices/${enc(v.model || '')}`, {
            input_per_mtok: Number(v.input_per_mtok || 0),
            output_per_mtok: Number(v.output_per_mtok || 0),
            ...(v.per_call ? { per_call: Number(v.per_call) } : {}),
            // Empty: the part is charged at the input (cache) or output
            // (reasoning) price.
            ...(v.cache_read_per_mtok ? { cache_read_per_mtok: Number(v.cache_read_per_mtok) } : {}),
            ...(v.cache_write_per_mtok ? { cache_write_per_mtok: Number(v.cache_write_per_mtok) } : {}),
            ...(v.reasoning_per_mtok ? { reasoning_per_mtok: Number(v.reasoning_per_mtok) } : {}),
            // Empty: the unit is not charged.
            per_image: Number(v.per_image || 0),
            per_mchar: Number(v.per_mchar || 0),
            per_audio_second: Number(v.per_audio_second || 0),
            per_search: Number(v.per_search || 0),
          });
          form.reset();
          await reload();
        });
      },
    },
  },
  field('Model', input('model', { required: true })),
  field('Input USD / 1M tokens', input('input_per_mtok', { type: 'number', step: 'any', min: 0 })),
  field('Output USD / 1M tokens', input('output_per_mtok', { type: 'number', step: 'any', min: 0 })),
  field('Per call USD', input('per_call', { type: 'number', step: 'any', min: 0 })),
  field('Cache read USD / 1M (empty: input price)', input('cache_read_per_mtok', { type: 'number', step: 'any', min: 0 })),
  field('Cache write USD / 1M (empty: input price)', input('cache_write_per_mtok', { type: 'number', step: 'any', min: 0 })),
  field('Reasoning USD / 1M (empty: output price)', input('reasoning_per_mtok', { type: 'number', step: 'any', min: 0 })),
  field('USD per image', input('per_image', { type: 'number', step: 'any', min: 0 })),
  field('Speech USD / 1M characters', input('per_mchar', { type: 'number', step: 'any', min: 0 })),
  field('Audio USD / second ($0.006/min = 0.0001)', input('per_audio_second', { type: 'number', step: 'any', min: 0 })),
  field('USD per rerank search', input('per_search', { type: 'number', step: 'any', min: 0 })),
  h('button', { type: 'submit', class: 'primary' }, 'Set price'));

  clear(main, h('h1', {}, 'Prices'), h('div', { class: 'panel' }, form), status,
    h('h2', {}, 'Unpriced models'), unpriced, h('h2', {}, 'Prices'), prices);

  async function reload() {
    await attempt(status, async () => {
      const [p, u] = await Promise.all([get('/admin/model-prices'), get('/admin/unpriced-models')]);
      clear(prices, table([
        { label: 'Model', value: r => r.model },
        { label: 'Input / 1M', value: r => usd(r.input_per_mtok) },
        { label: 'Output / 1M', value: r => usd(r.output_per_mtok) },
        { label: 'Per call', value: r => usd(r.per_call) },
        { label: 'Cache read / 1M', value: r => r.cache_read_per_mtok == null ? 'as input' : usd(r.cache_read_per_mtok) },
        { label: 'Cache write / 1M', value: r => r.cache_write_per_mtok == null ? 'as input' : usd(r.cache_write_per_mtok) },
        { label: 'Reasoning / 1M', value: r => r.reasoning_per_mtok == null ? 'as output' : usd(r.reasoning_per_mtok) },
        { label: 'Media units', value: mediaRates },
        { label: 'Updated', value: r => time(r.updated_at) },
        { label: '', value: r => h('button', { type: 'button', class: 'small danger', 'aria-label': `Delete price of ${r.model}`, on: { click: () => confirm(`Delete the price of ${r.model}?`) && attempt(status, async () => { await del(`/admin/model-prices/${enc(r.model)}`); await reload(); }) } }, 'Delete') },
      ], p.data, { empty: 'No prices yet.', label: 'Prices' }));
      clear(unpriced, u.data.length
        ? table([
          { label: 'Model', value: r => r.model },
          { label: 'Requests', value: r => num(r.requests) },
          { label: 'Last seen', value: r => time(r.last_seen_at) },
          { label: '', value: r => h('button', { type: 'button', class: 'small', on: { click: () => { form.elements.model.value = r.model; form.elements.input_per_mtok.focus(); } } }, 'Set price') },
        ], u.data, { label: 'Unpriced models' })
        : h('p', { class: 'ok' }, 'Every model served has a price.'));
    });
  }
  await reload();
}

// The media unit rates a price charges ('–': none), e.g. "$0.0400 / image".
function mediaRates(r) {
  const rates = [
    [r.per_image, 'image'],
    [r.per_mchar, '1M chars'],
    [r.per_audio_second, 'audio s'],
    [r.per_search, 'search'],
  ].filter(([rate]) => rate > 0).map(([rate, unit]) => `${usd(rate)} / ${unit}`);
  return rates.length ? rates.join(', ') : '–';
}
