// Stop, pause, resume and restart, on one run or a selection: always
// confirmed first, always followed by the outcome or the server's error.
import { html } from './html.js';
import { api, runPath } from './api.js';
import { LEGAL, plural } from './format.js';
import { confirmAction, toast } from './ui.js';

export const ACTIONS = {
  stop: { label: '🛑 Stop', verb: 'Stop', done: 'stopping', tone: 'red',
    what: 'Each run gets its stop signal (and checkpoint signal, if set), a grace period, then SIGKILL; a paused run is resumed first.' },
  pause: { label: '⏸️ Pause', verb: 'Pause', done: 'paused', tone: 'yellow',
    what: 'Every process of each run is frozen; memory stays allocated (GPU memory too).' },
  resume: { label: '▶️ Resume', verb: 'Resume', done: 'resumed', tone: 'green',
    what: 'Every process of each run continues where it stopped.' },
  restart: { label: '🔁 Restart', verb: 'Restart', done: 'restarted', tone: 'blue',
    what: 'A new run of the same spec starts from the newest checkpoint.' },
};

/** True when `action` is legal for every run of a non-empty selection. */
export const allowed = (action, runs) =>
  runs.length > 0 && runs.every((r) => LEGAL[action](r.state));

/** Asks, then applies `action` to `runs`; reports what happened. Returns
 *  true when every run accepted it. */
export async function perform(action, runs, onDone) {
  const a = ACTIONS[action];
  const ids = runs.map((r) => r.id);
  const yes = await confirmAction(`${a.verb} ${plural(ids.length, 'run')}?`,
    html`<ul class="confirm-list">${ids.map((id) => html`<li><code>${id}</code></li>`)}</ul>
      <p>${a.what}</p>`, a.verb, a.tone);
  if (!yes) return false;
  const results = await Promise.allSettled(
    ids.map((id) => api('POST', runPath(id, `/${action}`))));
  const failed = [];
  const made = [];
  results.forEach((r, i) => {
    if (r.status === 'rejected') failed.push(`${ids[i]}: ${r.reason.message}`);
    else if (action === 'restart') made.push(r.value.id);
  });
  const ok = ids.length - failed.length;
  if (failed.length) {
    toast(`${ok ? `${a.verb}: ${ok} of ${ids.length} done. ` : ''}${failed.join('; ')}`, true);
  } else if (action === 'restart') {
    toast(`Restarted as ${made.join(', ')}`);
  } else {
    toast(`${ids.join(', ')}: ${a.done}`);
  }
  onDone && onDone();
  return failed.length === 0;
}

/** The action buttons for a selection of runs. */
export function ActionButtons({ runs, actions = ['stop', 'pause', 'resume'], onDone }) {
  return html`<div class="actions">
    ${actions.map((name) => {
      const ok = allowed(name, runs);
      return html`<button class=${`btn-${ACTIONS[name].tone}`} data-testid=${name}
        disabled=${!ok}
        title=${ok ? '' : runs.length ? `not possible for the selected state${runs.length > 1 ? 's' : ''}` : 'select runs first'}
        onClick=${() => perform(name, runs, onDone)}>${ACTIONS[name].label}</button>`;
    })}
  </div>`;
}
