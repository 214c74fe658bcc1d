// One run's page: what it is and where it stands, its actions, and the
// Progress, Logs and Resources tabs.
import { useEffect, useState } from 'preact/hooks';
import { html } from './html.js';
import { api, follow, runPath } from './api.js';
import { ActionButtons } from './actions.js';
import { duration, uptime } from './format.js';
import { StateBadge } from './runs_view.js';
import { ProgressTab } from './progress_tab.js';
import { LogsTab } from './logs_tab.js';
import { ResourcesTab } from './resources_tab.js';
import { useInterval } from './ui.js';

const TABS = [['progress', '📈 Progress'], ['logs', '📜 Logs'], ['resources', '🧮 Resources']];

function Facts({ run }) {
  const rows = [
    ['Experiment', run.experiment],
    ['Command', html`<code>${run.command.join(' ')}</code>`],
    ['Directory', html`<code>${run.cwd}</code>`],
    ['PID', run.pid ?? '–'],
    ['Uptime', duration(uptime(run))],
    ['Attempt', run.attempt],
    run.restart_of && ['Restart of', html`<a href=${`#/runs/${encodeURIComponent(run.restart_of)}`}>${run.restart_of}</a>`],
    run.gpus.length && ['GPUs', run.gpus.join(', ')],
    run.exit_code !== null && ['Exit code', run.exit_code],
    run.signal && ['Signal', run.signal],
    run.message && ['Message', run.message],
  ].filter(Boolean);
  return html`<dl class="facts">${rows.map(([k, v]) => html`<dt>${k}</dt><dd>${v}</dd>`)}</dl>`;
}

export function RunView({ id, tab, onChange }) {
  const [run, setRun] = useState(null);
  const [error, setError] = useState('');
  const [events, setEvents] = useState([]);
  const [artifactTick, setArtifactTick] = useState(0);

  const load = () => api('GET', runPath(id)).then((r) => {
    setRun(r);
    setError('');
  }, (e) => setError(e.message));
  useInterval(load, 2000, [id]);

  useEffect(() => {
    setEvents([]);
    return follow(runPath(id, '/events'), { follow: 1 }, {
      event: (e) => {
        setEvents((list) => (list.length >= 1000 ? list.slice(-999) : list).concat([e]));
        if (e.type === 'state') {
          load();
          onChange && onChange();
        }
        if (e.type === 'artifact' || e.type === 'checkpoint') setArtifactTick((n) => n + 1);
      },
    });
  }, [id]);

  if (!run) return html`<div class="run-page"><p class=${error ? 'error-text' : 'muted'}>
    ${error || `Loading ${id}…`}</p><a href="#/">← all runs</a></div>`;
  const afterAction = () => {
    load();
    onChange && onChange();
  };
  return html`<div class="run-page">
    <div class="run-head">
      <a href="#/" class="back">← all runs</a>
      <h1>${run.id}</h1>
      <${StateBadge} run=${run} />
      <${ActionButtons} runs=${[run]} actions=${['stop', 'pause', 'resume', 'restart']} onDone=${afterAction} />
    </div>
    ${error && html`<p class="error-text">${error}</p>`}
    <${Facts} run=${run} />
    <nav class="tabs" role="tablist">
      ${TABS.map(([name, label]) => html`<a role="tab" href=${`#/runs/${encodeURIComponent(id)}/${name}`}
        class=${tab === name ? 'active' : ''} aria-selected=${tab === name}
        data-testid=${`tab-${name}`}>${label}</a>`)}
    </nav>
    <div class="tab-body">
      ${tab === 'progress' && html`<${ProgressTab} run=${run} artifactTick=${artifactTick} />`}
      ${tab === 'logs' && html`<${LogsTab} run=${run} events=${events} />`}
      ${tab === 'resources' && html`<${ResourcesTab} run=${run} />`}
    </div>
  </div>`;
}
