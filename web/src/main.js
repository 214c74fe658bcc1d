// The dashboard: a hash router over the runs list, a run's page and the
// submit page; the runs list is kept live by the daemon's event stream.
import { render } from 'preact';
import { useEffect, useRef, useState } from 'preact/hooks';
import 'uplot/dist/uPlot.min.css';
import './style.css';
import { html } from './html.js';
import { adoptTokenFromUrl, api, follow, onUnauthorized } from './api.js';
import { EMOJI } from './format.js';
import { RunsView } from './runs_view.js';
import { RunView } from './run_view.js';
import { SubmitView } from './submit_view.js';
import { ConfirmDialog, Toast, TokenDialog, askToken, useInterval } from './ui.js';

function useRoute() {
  const parse = () => {
    const parts = location.hash.replace(/^#\/?/, '').split('/').map(decodeURIComponent);
    if (parts[0] === 'runs' && parts[1]) return { page: 'run', id: parts[1], tab: parts[2] || 'progress' };
    if (parts[0] === 'submit') return { page: 'submit' };
    return { page: 'runs' };
  };
  const [route, setRoute] = useState(parse);
  useEffect(() => {
    const on = () => setRoute(parse());
    window.addEventListener('hashchange', on);
    return () => window.removeEventListener('hashchange', on);
  }, []);
  return route;
}

function App() {
  const route = useRoute();
  const [runs, setRuns] = useState([]);
  const [error, setError] = useState('');
  const [live, setLive] = useState(false);
  // Bumped when a token is entered, so every poller and stream starts over.
  const [authTick, setAuthTick] = useState(0);
  const pending = useRef(0);

  const refresh = () => api('GET', '/runs').then((r) => {
    setRuns(r.runs);
    setError('');
  }, (e) => setError(e.status === 401 ? '' : e.message));

  useEffect(() => onUnauthorized(askToken), []);
  // Resources and progress change without events: poll them gently.
  useInterval(refresh, 3000, [authTick]);
  useEffect(() => follow('/events', {}, {
    open: () => setLive(true),
    error: () => setLive(false),
    // A burst of events (a sweep starting) is one refresh.
    event: () => {
      clearTimeout(pending.current);
      pending.current = setTimeout(refresh, 150);
    },
  }), [authTick]);

  const counts = {};
  runs.forEach((r) => (counts[r.state] = (counts[r.state] || 0) + 1));
  const summary = ['running', 'paused', 'queued', 'failed'].filter((s) => counts[s])
    .map((s) => `${EMOJI[s]} ${counts[s]}`).join('  ');
  useEffect(() => {
    document.title = `Corral${summary ? ` · ${summary}` : ''}`;
  }, [summary]);

  return html`<div class="app">
    <header class="top">
      <a class="brand" href="#/">🐎 Corral</a>
      <nav>
        <a href="#/" class=${route.page === 'runs' ? 'active' : ''}>Runs</a>
        <a href="#/submit" class=${route.page === 'submit' ? 'active' : ''} data-testid="nav-submit">Submit</a>
      </nav>
      <span class="grow"></span>
      <span class="muted small">${summary}</span>
      <span class=${`live ${live ? 'on' : 'off'}`} title=${live ? 'live: following the daemon\'s events' : 'not connected to the daemon\'s events'}>
        ${live ? '● live' : '○ offline'}</span>
    </header>
    <main>
      ${route.page === 'runs' && html`<${RunsView} runs=${runs} error=${error} refresh=${refresh} authTick=${authTick} />`}
      ${route.page === 'run' && html`<${RunView} key=${`${route.id}/${authTick}`} id=${route.id} tab=${route.tab} onChange=${refresh} />`}
      ${route.page === 'submit' && html`<${SubmitView} onSubmitted=${() => {
        refresh();
        location.hash = '#/';
      }} />`}
    </main>
    <${Toast} />
    <${ConfirmDialog} />
    <${TokenDialog} onSaved=${() => setAuthTick((n) => n + 1)} />
  </div>`;
}

adoptTokenFromUrl();
render(html`<${App} />`, document.getElementById('app'));
