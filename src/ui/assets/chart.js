// Time-series charts with the vendored uPlot (vendor/README.md says why).
// Colours come from the CSS variables, so the charts follow the theme.
import { h } from './dom.js';

/** Axis labels with enough digits for small values (costs of a cent). */
function tick(value) {
  if (value === 0) return '0';
  const abs = Math.abs(value);
  if (abs >= 1000) return value.toLocaleString('en-US', { maximumFractionDigits: 0 });
  if (abs >= 1) return String(Number(value.toPrecision(4)));
  return String(Number(value.toPrecision(2)));
}

function cssVar(name) {
  return getComputedStyle(document.documentElement).getPropertyValue(name).trim() || '#888';
}

/**
 * A chart of `series` ([{label, values}]) over `times` (unix seconds),
 * appended to `parent`. Returns the uPlot instance (destroy() on leave).
 */
export function timeChart(parent, title, times, series, { unit = '', range = null } = {}) {
  const box = h('div', { class: 'chart card', role: 'img', 'aria-label': title }, h('div', { class: 'title' }, title));
  parent.append(box);
  if (typeof window.uPlot !== 'function') {
    box.append(h('p', { class: 'muted' }, 'Charts are unavailable (uPlot did not load).'));
    return null;
  }
  const colours = ['--chart-1', '--chart-2', '--chart-3', '--chart-4'].map(cssVar);
  const axis = { stroke: cssVar('--muted'), grid: { stroke: cssVar('--border'), width: 1 }, ticks: { stroke: cssVar('--border') } };
  const width = Math.max(320, box.clientWidth - 24);
  const options = {
    width,
    height: 200,
    series: [{}, ...series.map((s, i) => ({
      label: s.label,
      stroke: colours[i % colours.length],
      width: 2,
      // Points too: a range with one busy bucket would draw no line.
      points: { show: true, size: 5 },
      value: (_, v) => (v === null || v === undefined ? '–' : `${Number(v).toLocaleString('en-US', { maximumFractionDigits: 4 })}${unit}`),
    }))],
    axes: [axis, { ...axis, size: 60, values: (_, ticks) => ticks.map(tick) }],
    scales: { x: { time: true }, ...(range ? { y: { range: () => range } } : {}) },
  };
  return new window.uPlot(options, [times, ...series.map(s => s.values)], box);
}
