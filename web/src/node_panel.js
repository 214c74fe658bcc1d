// The machine beside the runs: is there room to start or resume more?
import { useState } from 'preact/hooks';
import { html } from './html.js';
import { api } from './api.js';
import { bytes, pct } from './format.js';
import { useInterval } from './ui.js';

function Meter({ label, value, detail }) {
  const v = value === null || value === undefined ? null : Math.max(0, Math.min(100, value));
  const tone = v === null ? '' : v >= 90 ? 'hot' : v >= 70 ? 'warm' : '';
  return html`<div class="meter">
    <div class="meter-label"><span>${label}</span><span>${detail}</span></div>
    <div class=${`bar ${tone}`}><div style=${`width:${v ?? 0}%`}></div></div>
  </div>`;
}

export function NodePanel({ authTick }) {
  const [node, setNode] = useState(null);
  const [error, setError] = useState('');
  useInterval(() => {
    api('GET', '/node').then((n) => {
      setNode(n);
      setError('');
    }, (e) => setError(e.status === 401 ? 'Waiting for the access token…' : e.message));
  }, 2000, [authTick]);
  if (!node) return html`<section class="node" data-testid="node">${error || 'Loading the machine…'}</section>`;
  const memPct = node.memory_total ? (100 * node.memory_used) / node.memory_total : null;
  return html`<section class="node" data-testid="node" aria-label="machine">
    <${Meter} label=${`CPU · ${node.cpus} cores`} value=${node.cpu_pct}
      detail=${`${pct(node.cpu_pct)} · load ${node.load.map((l) => l.toFixed(2)).join(' ')}`} />
    <${Meter} label="Memory" value=${memPct}
      detail=${`${bytes(node.memory_used)} / ${bytes(node.memory_total)}`} />
    ${node.gpus.map((g) => {
      const mem = g.memory_total ? (100 * g.memory_used) / g.memory_total : null;
      return html`<${Meter} label=${`GPU ${g.index}${g.name ? ` · ${g.name}` : ''}`}
        value=${g.utilization ?? mem}
        detail=${[g.utilization !== null ? `${g.utilization}% busy` : null,
          g.memory_total ? `${bytes(g.memory_used)} / ${bytes(g.memory_total)}` : null,
          g.run ? `held by ${g.run}` : 'free'].filter(Boolean).join(' · ')} />`;
    })}
    ${node.gpus.length === 0 && html`<div class="muted small">No GPUs (${node.gpu_source}).</div>`}
    ${error && html`<div class="error-text small">${error}</div>`}
  </section>`;
}
