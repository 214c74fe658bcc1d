// The Progress tab: fraction and ETA, a chart per parsed metric, the
// checkpoints and videos as they appear.
import { useEffect, useState } from 'preact/hooks';
import { html } from './html.js';
import { api, authUrl, runPath } from './api.js';
import { bytes, clock, duration, number } from './format.js';
import { MetricChart } from './chart.js';
import { ProgressBar } from './runs_view.js';
import { useInterval } from './ui.js';

function Artifacts({ run, artifactTick }) {
  const [files, setFiles] = useState(null);
  const [error, setError] = useState('');
  useEffect(() => {
    api('GET', runPath(run.id, '/artifacts')).then((a) => {
      setFiles(a);
      setError('');
    }, (e) => setError(e.message));
  }, [run.id, artifactTick]);
  const link = (f) => authUrl(runPath(run.id, `/artifacts/${encodeURIComponent(f.name)}`));
  const newest = (list) => [...list].sort((a, b) => b.mtime.localeCompare(a.mtime));
  return html`<section class="artifacts" data-testid="artifacts">
    <h3>Checkpoints</h3>
    ${error && html`<p class="error-text">${error}</p>`}
    ${files && (files.checkpoints.length
      ? html`<table class="files"><tbody>${newest(files.checkpoints).map((f) => html`<tr data-artifact=${f.name}>
          <td><a href=${link(f)} download>${f.name}</a></td>
          <td class="num">${bytes(f.size)}</td><td class="muted">${clock(f.mtime)}</td></tr>`)}</tbody></table>`
      : html`<p class="muted">None yet${run.state === 'running' ? '' : '.'}</p>`)}
    <h3>Videos</h3>
    ${files && (files.videos.length
      ? html`<div class="videos">${newest(files.videos).map((f) => html`<figure data-artifact=${f.name}>
          <video controls preload="metadata" src=${link(f)}></video>
          <figcaption><a href=${link(f)} download>${f.name}</a> · ${bytes(f.size)} · ${clock(f.mtime)}</figcaption>
        </figure>`)}</div>`
      : html`<p class="muted">None yet.</p>`)}
  </section>`;
}

export function ProgressTab({ run, artifactTick }) {
  const [metrics, setMetrics] = useState(null);
  const [error, setError] = useState('');
  const [xAxis, setXAxis] = useState('time');
  const [filter, setFilter] = useState('');
  const live = !['stopped', 'finished', 'failed'].includes(run.state);
  useInterval(() => {
    api('GET', runPath(run.id, '/metrics')).then((m) => {
      setMetrics(m);
      setError('');
    }, (e) => setError(e.message));
  }, live ? 2000 : 60000, [run.id, live]);
  const names = metrics ? Object.keys(metrics.series).sort() : [];
  const shown = names.filter((n) => n.toLowerCase().includes(filter.toLowerCase()));
  const p = run.progress || {};
  return html`<div class="progress-tab">
    <div class="summary-strip">
      <div><span class="muted">Progress</span><${ProgressBar} progress=${p} /></div>
      <div><span class="muted">ETA</span><strong>${duration(p.eta_s)}</strong></div>
      <div><span class="muted">Active</span><strong>${duration(run.active_s)}</strong></div>
      ${Object.entries(p.metrics || {}).slice(0, 4).map(([k, v]) =>
        html`<div><span class="muted">${k}</span><strong>${number(v)}</strong></div>`)}
    </div>
    <div class="toolbar">
      <label>x axis <select value=${xAxis} onChange=${(e) => setXAxis(e.target.value)}>
        <option value="time">time</option><option value="step">step (counter)</option></select></label>
      <label>Metric <input placeholder="filter" value=${filter} onInput=${(e) => setFilter(e.target.value)} /></label>
      <span class="muted">${metrics ? `${names.length} metrics` : ''}</span>
    </div>
    ${error && html`<p class="error-text">${error}</p>`}
    <div class="charts" data-testid="charts">
      ${shown.map((n) => html`<${MetricChart} key=${n} name=${n} points=${metrics.series[n]} xAxis=${xAxis} />`)}
    </div>
    ${metrics && names.length === 0 && html`<p class="empty">No metrics parsed yet. The experiment's
      <code>progress.format</code> (sb3, jsonl, kv, csv, regex) says how to read them.</p>`}
    <${Artifacts} run=${run} artifactTick=${artifactTick} />
  </div>`;
}
