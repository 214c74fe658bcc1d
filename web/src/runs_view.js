// The runs list: every run with its state, progress and resources;
// filters; a selection the action buttons apply to.
import { useMemo, useState } from 'preact/hooks';
import { html } from './html.js';
import { ActionButtons } from './actions.js';
import { EMOJI, STATES, bytes, duration, pct, plural, uptime } from './format.js';
import { NodePanel } from './node_panel.js';

export function StateBadge({ run }) {
  const extra = run.state === 'queued' && run.queue_position ? ` #${run.queue_position}` : '';
  return html`<span class=${`state state-${run.state}`} data-testid="state"
    title=${run.message || run.state}>${EMOJI[run.state] || '?'} ${run.state}${extra}</span>`;
}

export function ProgressBar({ progress }) {
  const f = progress && progress.fraction;
  if (f === null || f === undefined) return html`<span class="muted">–</span>`;
  const p = Math.max(0, Math.min(1, f)) * 100;
  return html`<div class="progress" title=${`${p.toFixed(1)}%`}>
    <div class="bar"><div style=${`width:${p}%`}></div></div>
    <span>${p.toFixed(p < 10 ? 1 : 0)}%</span>
  </div>`;
}

export function RunsView({ runs, error, refresh, authTick }) {
  const [stateFilter, setStateFilter] = useState('');
  const [expFilter, setExpFilter] = useState('');
  const [selected, setSelected] = useState(new Set());
  const experiments = useMemo(() => [...new Set(runs.map((r) => r.experiment))].sort(), [runs]);
  const visible = runs.filter((r) => (!stateFilter
      || (stateFilter === 'active' ? !['stopped', 'finished', 'failed'].includes(r.state) : r.state === stateFilter))
    && (!expFilter || r.experiment.toLowerCase().includes(expFilter.toLowerCase())));
  // Only what is visible stays selected, so a button never acts on a run
  // the user cannot see.
  const chosen = visible.filter((r) => selected.has(r.id));
  const toggle = (id) => {
    const next = new Set(selected);
    next.has(id) ? next.delete(id) : next.add(id);
    setSelected(next);
  };
  const allChosen = visible.length > 0 && chosen.length === visible.length;
  const counts = {};
  runs.forEach((r) => (counts[r.state] = (counts[r.state] || 0) + 1));
  const now = Date.now();
  return html`<div class="runs-page">
    <${NodePanel} authTick=${authTick} />
    <section class="runs">
      <div class="toolbar">
        <label>State <select data-testid="filter-state" value=${stateFilter}
            onChange=${(e) => setStateFilter(e.target.value)}>
          <option value="">all (${runs.length})</option>
          <option value="active">not ended</option>
          ${STATES.map((s) => html`<option value=${s}>${EMOJI[s]} ${s} (${counts[s] || 0})</option>`)}
        </select></label>
        <label>Experiment <input data-testid="filter-experiment" list="experiments"
          placeholder="any" value=${expFilter} onInput=${(e) => setExpFilter(e.target.value)} />
          <datalist id="experiments">${experiments.map((x) => html`<option value=${x} />`)}</datalist>
        </label>
        <span class="muted">${chosen.length ? `${plural(chosen.length, 'run')} selected` : ''}</span>
        <${ActionButtons} runs=${chosen} onDone=${refresh} />
      </div>
      ${error && html`<p class="error-text">${error}</p>`}
      <table class="runs-table" data-testid="runs">
        <thead><tr>
          <th><input type="checkbox" aria-label="select all" checked=${allChosen}
            onChange=${() => setSelected(allChosen ? new Set() : new Set(visible.map((r) => r.id)))} /></th>
          <th>Run</th><th>State</th><th>Experiment</th><th>GPUs</th><th>Progress</th>
          <th>ETA</th><th>Uptime</th><th>CPU</th><th>RSS</th>
        </tr></thead>
        <tbody>
          ${visible.map((r) => html`<tr key=${r.id} data-run-id=${r.id} data-state=${r.state}
              class=${`row-${r.state}${selected.has(r.id) ? ' selected' : ''}`}>
            <td><input type="checkbox" data-testid="select" aria-label=${`select ${r.id}`}
              checked=${selected.has(r.id)} onChange=${() => toggle(r.id)} /></td>
            <td><a data-testid="run-link" href=${`#/runs/${encodeURIComponent(r.id)}`}>${r.id}</a></td>
            <td><${StateBadge} run=${r} /></td>
            <td>${r.experiment}</td>
            <td>${r.gpus && r.gpus.length ? r.gpus.join(',') : '–'}</td>
            <td><${ProgressBar} progress=${r.progress} /></td>
            <td>${duration(r.progress && r.progress.eta_s)}</td>
            <td>${duration(uptime(r, now))}</td>
            <td class="num">${r.resources ? pct(r.resources.cpu_pct) : '–'}</td>
            <td class="num">${r.resources ? bytes(r.resources.rss_bytes) : '–'}</td>
          </tr>`)}
        </tbody>
      </table>
      ${visible.length === 0 && html`<p class="empty">${runs.length
        ? 'No run matches the filters.'
        : html`No runs yet. <a href="#/submit">Submit an experiments file</a> or run <code>corral submit FILE</code>.`}</p>`}
    </section>
  </div>`;
}
