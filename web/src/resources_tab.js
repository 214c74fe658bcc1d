// The Resources tab: the process tree as the kernel shows it, and the
// GPUs the run holds.
import { useState } from 'preact/hooks';
import { html } from './html.js';
import { api } from './api.js';
import { bytes, pct } from './format.js';
import { useInterval } from './ui.js';

const STATE_NAMES = { R: 'running', S: 'sleeping', D: 'disk wait', T: 'stopped',
  t: 'traced', Z: 'zombie', I: 'idle', X: 'dead' };

/** Processes in tree order, each with its depth under the run's root. */
function treeOrder(procs) {
  const pids = new Set(procs.map((p) => p.pid));
  const children = new Map();
  for (const p of procs) {
    const parent = pids.has(p.ppid) ? p.ppid : 0;
    if (!children.has(parent)) children.set(parent, []);
    children.get(parent).push(p);
  }
  const out = [];
  const walk = (pid, depth) => {
    for (const c of (children.get(pid) || []).sort((a, b) => a.pid - b.pid)) {
      out.push({ ...c, depth });
      walk(c.pid, depth + 1);
    }
  };
  walk(0, 0);
  return out;
}

export function ResourcesTab({ run }) {
  const [gpus, setGpus] = useState(null);
  useInterval(() => {
    api('GET', '/gpus').then((g) => setGpus(g.gpus.filter((x) => x.run === run.id)), () => {});
  }, 5000, [run.id]);
  const procs = treeOrder(run.processes || []);
  const r = run.resources || {};
  return html`<div class="resources-tab">
    <div class="summary-strip">
      <div><span class="muted">Processes</span><strong>${run.process_count ?? procs.length}</strong></div>
      <div><span class="muted">CPU</span><strong>${pct(r.cpu_pct)}</strong></div>
      <div><span class="muted">RSS</span><strong>${bytes(r.rss_bytes)}</strong></div>
      <div><span class="muted">GPU memory</span><strong>${bytes(r.gpu_memory_bytes)}</strong></div>
      <div><span class="muted">Pause by</span><strong>${run.pause_mechanism || '–'}</strong></div>
      ${run.executor === 'slurm' && html`
        <div><span class="muted">Slurm job</span><strong data-testid="slurm-job">${run.slurm_job_id || '–'}</strong></div>
        <div><span class="muted">Node</span><strong>${run.node || '–'}</strong></div>`}
    </div>
    <h3>Process tree</h3>
    ${procs.length === 0
      ? html`<p class="muted">${run.executor === 'slurm'
        ? 'The processes run on a Slurm node; the daemon sees them through Slurm only.'
        : `No live process${run.state === 'queued' ? ' yet' : ''}.`}</p>`
      : html`<table class="procs" data-testid="processes">
        <thead><tr><th>PID</th><th>PPID</th><th>State</th><th>CPU</th><th>RSS</th><th>Command</th></tr></thead>
        <tbody>${procs.map((p) => html`<tr data-pid=${p.pid}>
          <td class="num">${p.pid}</td><td class="num muted">${p.ppid}</td>
          <td title=${STATE_NAMES[p.state] || p.state}>${p.frozen ? '❄️ frozen' : ''} <code>${p.state}</code></td>
          <td class="num">${pct(p.cpu_pct)}</td><td class="num">${bytes(p.rss_bytes)}</td>
          <td class="cmd" style=${`padding-left:${0.5 + p.depth * 1.2}em`}>${p.depth ? '└ ' : ''}${p.cmd}</td>
        </tr>`)}</tbody></table>`}
    <h3>GPUs</h3>
    ${run.gpus && run.gpus.length
      ? html`<table class="procs"><thead><tr><th>Index</th><th>Name</th><th>Busy</th><th>Memory</th></tr></thead>
        <tbody>${run.gpus.map((i) => {
          const g = (gpus || []).find((x) => x.index === i) || {};
          return html`<tr><td class="num">${i}</td><td>${g.name || '–'}</td>
            <td class="num">${g.utilization !== null && g.utilization !== undefined ? `${g.utilization}%` : '–'}</td>
            <td class="num">${g.memory_total ? `${bytes(g.memory_used)} / ${bytes(g.memory_total)}` : '–'}</td></tr>`;
        })}</tbody></table>`
      : html`<p class="muted">This run holds no GPU.</p>`}
  </div>`;
}
